"""Finding a subject's mention in a prompt, also where a translation inflects it."""

from __future__ import annotations

import pytest

from peft_mpn.data.subjects import find_subject, subject_mention


@pytest.mark.parametrize(
    ("prompt", "subject", "mention"),
    [
        ("Who developed the Fiat Grande Punto?", "Fiat Grande Punto", "Fiat Grande Punto"),
        ("Какой город является городом-побратимом Праги?", "Прага", "Праги"),
        ("Какой город является столицей Прага-Западного округа?", "Прага-Западный округ", "Прага-Западного округа"),
        ("Какой родной язык у Жана де Лафонтена?", "Жан де Лафонтен", "Жана де Лафонтена"),
        (
            "Quelle est la capitale de l'arrondissement de Prague-Ouest?",
            "Arrondissement de Prague-Ouest",
            "arrondissement de Prague-Ouest",
        ),
        (
            "Was war die Hauptstadt der Ersten Tschechoslowakischen Republik?",
            "Erste Tschechoslowakische Republik",
            "Ersten Tschechoslowakischen Republik",
        ),
        ("谁开发了菲亚特大 Punto？", "菲亚特大 Punto", "菲亚特大 Punto"),
    ],
)
def test_a_subject_is_found_as_written_or_inflected(prompt, subject, mention):
    span = find_subject(prompt, subject)
    assert span is not None and prompt[span[0] : span[1]] == mention == subject_mention(prompt, subject)


def test_the_last_mention_is_found():
    prompt = "Q: Where is Paris?\nA: France\nQ: Where was the mayor of Paris born?\nA:"
    assert find_subject(prompt, "Paris") == (prompt.rindex("Paris"), prompt.rindex("Paris") + 5)


@pytest.mark.parametrize(
    ("prompt", "subject"),
    [
        ("Из какого города родом Хамо Торникрафт?", "Hamo Thornycroft"),  # another script: not a mention
        ("Какой язык используется в Правительстве?", "Прага"),  # a stem that runs on into a longer word
        ("Where was she born?", "Ada Lovelace"),
        ("哪家公司生产本田巴厘岛？", "本田EV"),  # no endings in a script without spaces
        ("Where was Ada born?", None),
        ("Where was Ada born?", "  "),
    ],
)
def test_what_is_not_a_mention_is_not_found(prompt, subject):
    assert find_subject(prompt, subject) is None
