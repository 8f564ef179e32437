"""Cross-lingual knowledge-editing metric: reliability, generality, locality and portability per language.

evaluate copies this script into the HF modules cache, so it cannot import its neighbours relatively; it
imports the logic from the installed package instead (peft_mpn.metrics.edit_metrics): one implementation,
used the same way with and without evaluate, and never a stale copy of it in the cache.
"""

import datasets
import evaluate

from peft_mpn.metrics.edit_metrics import compute_cross_lingual_edit

_DESCRIPTION = """
Scores a knowledge edit across languages from teacher-forced predictions (the argmax token at each target
position when the model reads `prompt + " " + target`). Each row is one scored prompt of one case in one
language; a row scores its token accuracy (mean over target tokens) and its exact match (every target token
right). Rows of the same case, language and probe are averaged, then cases.

- reliability: the edit prompt in the edit language. In any other language the same probe is cross-lingual
  generalization (CLG): the prompt in that language against the target written in that language.
- generality: a rephrase of the prompt, in the same language.
- locality: unrelated prompts: agreement of the post-edit predictions with the PRE-edit predictions (not
  accuracy against the locality answer).
- portability: a follow-up question whose answer follows from the edit.

Cross-lingual reliability is also split by whether the language's target is the same string as the
edit-language target ("copied": years, names in Latin script) or not ("translated"): an unsplit CLG mostly
measures string copying. A third reading scores the edit-language target on the other language's prompt
(the fact transferred, answered in the edit language).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `int`): per row, the argmax token id at each target position under
        teacher forcing (`TargetScore.predicted`). For locality rows: the POST-edit argmax tokens.
    references (`list` of `list` of `int`): per row, the target token ids (`TargetScore.target`), as many as
        the predictions. For locality rows: the PRE-edit argmax tokens at the same positions.
    case_id (`list` of `str`): the edit case of each row.
    language (`list` of `str`): the language of the scored prompt.
    probe (`list` of `str`): one of "reliability", "generality", "locality", "portability",
        "edit_language_answer" (the prompt in `language` against the edit-language target; not allowed in the
        edit language). Several rephrases of a case are several "generality" rows.
    copied (`list` of `bool`): whether the target written in `language` is the same string as the
        edit-language target. Read on reliability/generality rows outside the edit language (the same for
        every such row of a case and language); ignored on the other probes and in the edit language.
    edit_language (`str`): the language the edit was made in. Defaults to "en".
    augment_languages (`list` of `str`): languages whose parallel versions were used while editing (MPN's
        augmentation). The other non-edit languages are "unseen". Defaults to none.
    machine_translated_languages (`list` of `str`): languages whose trained versions a translator wrote rather
        than a person; reported apart from augment_languages and from the unseen ones. Defaults to none.
    languages (`list` of `str`, *optional*): the languages the rows must cover; a language named here without
        rows, or rows in a language not named, raise a ValueError. Defaults to the languages present.

Returns:
    reliability, generality, locality, portability (`float` or `None`), each with an `_em` twin (exact match):
        the edit language's scores.
    per_language (`dict`): language -> {reliability, generality, locality, portability, reliability_translated,
        reliability_copied, reliability_edit_language_answer, each with an `_em` twin}; reliability is the CLG
        score outside the edit language; `None` where a language has no case for that measure (the last three
        are always `None` in the edit language: they describe transfer).
    average, average_cross_lingual, average_augment, average_unseen (`dict`): the per-language values averaged
        over all languages, all but the edit language, the augmentation languages and the unseen languages
        (languages without a value skipped; `None` if none has one); average_machine_translated as well where
        machine_translated_languages were given.
    counts (`dict`): language -> {measure: number of cases behind it}.
    per_case (`dict`): case -> language -> {probe: [token accuracy, exact match], copied (outside the edit
        language)}: the case scores behind every per-language value, for comparing two edits case by case.
    edit_language (`str`), augment_languages, unseen_languages (`list` of `str`), num_cases (`int`).
    Every score is a fraction between 0 and 1; higher is better.

    Before-edit numbers: a second compute call with the unedited model's predictions, without locality rows.

Examples:
    Example 1-One case edited in English, scored in English and German (translated target):
        >>> metric = evaluate.load("path/to/peft_mpn/metrics/cross_lingual_edit")
        >>> results = metric.compute(
        ...     case_id=["0", "0", "0", "0"],
        ...     language=["en", "en", "de", "de"],
        ...     probe=["reliability", "locality", "reliability", "edit_language_answer"],
        ...     predictions=[[5, 6], [7, 8, 9], [1, 4], [5, 6]],
        ...     references=[[5, 6], [7, 8, 0], [1, 2], [5, 6]],
        ...     copied=[True, False, False, False],
        ...     edit_language="en",
        ... )
        >>> print(results["reliability"], results["locality"], results["per_language"]["de"]["reliability"])
        1.0 0.6666666666666666 0.5
        >>> print(results["per_language"]["de"]["reliability_translated_em"])
        0.0
"""

_CITATION = """
@article{si2024mpn,
  title={{MPN}: Leveraging Multilingual Patch Neuron for Cross-lingual Model Editing},
  author={Si, Nianwen and Zhang, Hao and Zhang, Weiqiang},
  journal={arXiv preprint arXiv:2401.03190},
  year={2024}
}
@inproceedings{zhang2025lafn,
  title={Multilingual Knowledge Editing with Language-Agnostic Factual Neurons},
  author={Zhang, Xue and Liang, Yunlong and Meng, Fandong and Zhang, Songming and Chen, Yufeng and Xu, Jinan
          and Zhou, Jie},
  booktitle={Proceedings of the 31st International Conference on Computational Linguistics (COLING)},
  year={2025},
  note={arXiv:2406.16416}
}
@inproceedings{wang2024remake,
  title={Retrieval-augmented Multilingual Knowledge Editing},
  author={Wang, Weixuan and Haddow, Barry and Birch, Alexandra},
  booktitle={Proceedings of the 62nd Annual Meeting of the Association for Computational Linguistics (ACL)},
  year={2024},
  note={arXiv:2312.13040; introduces the MzsRE benchmark}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class CrossLingualEdit(evaluate.Metric):
    """Reliability, generality, locality and portability of knowledge edits, per language."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                    "case_id": datasets.Value("string"),
                    "language": datasets.Value("string"),
                    "probe": datasets.Value("string"),
                    "copied": datasets.Value("bool"),
                }
            ),
            reference_urls=[
                "https://arxiv.org/abs/2401.03190",
                "https://arxiv.org/abs/2406.16416",
                "https://arxiv.org/abs/2312.13040",
            ],
        )

    def _compute(
        self,
        predictions,
        references,
        case_id,
        language,
        probe,
        copied,
        edit_language="en",
        augment_languages=(),
        languages=None,
        machine_translated_languages=(),
    ):
        return compute_cross_lingual_edit(
            predictions,
            references,
            case_id=case_id,
            language=language,
            probe=probe,
            copied=copied,
            edit_language=edit_language,
            augment_languages=augment_languages,
            languages=languages,
            machine_translated_languages=machine_translated_languages,
        )
