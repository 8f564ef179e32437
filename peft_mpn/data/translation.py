"""Parallel versions without a translator at hand: an edit given in one language, written in others by a translator.

A `Translator` is any callable `(texts, source, target) -> translations`, one per text and in order, with the
language codes the requests use ("en", "de", ...). Three kinds plug in:

- `model_translator(model, tokenizer)`: the edited model itself, shown two translated examples per language (no
  extra weights; the only option offline);
- `hf_translator("facebook/nllb-200-distilled-600M")`: any Hugging Face sequence-to-sequence translation model;
- a function of your own (a web service, a dictionary, a human's table).

`translate_requests` writes the versions each request lacks. Every translation is checked first: an empty one,
a prompt returned unchanged, or a prompt written mostly outside the language's script (`script_share`) is skipped
with a warning, never trained on. The languages written by machine are named in `EditRequest.machine_translated`
(and so in the edit manifest and the judge's groups), and every translation goes into a `TranslationCache`: a JSON
file to read and correct by hand before training, which later runs reuse.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..files import atomic_write_text, locked
from .languages import language_name, script_share
from .requests import EditRequest, FactView

logger = logging.getLogger(__name__)

#: `(texts, source language, target language) -> one translation per text`.
Translator = Callable[[Sequence[str], str, str], Sequence[str]]

#: The least share of a translated prompt's letters in its language's script (`script_share`) that is believed.
MIN_SCRIPT_SHARE = 0.3

#: `model_translator`'s examples: the same four texts (a question, its answer, a question, its answer) per language.
EXAMPLES: dict[str, tuple[str, str, str, str]] = {
    "en": ("What is the capital of France?", "Paris", "Who wrote Hamlet?", "William Shakespeare"),
    "ar": ("ما هي عاصمة فرنسا؟", "باريس", "من كتب هاملت؟", "ويليام شكسبير"),
    "bg": ("Коя е столицата на Франция?", "Париж", "Кой е написал „Хамлет“?", "Уилям Шекспир"),
    "ca": ("Quina és la capital de França?", "París", "Qui va escriure Hamlet?", "William Shakespeare"),
    "cs": ("Jaké je hlavní město Francie?", "Paříž", "Kdo napsal Hamleta?", "William Shakespeare"),
    "da": ("Hvad er Frankrigs hovedstad?", "Paris", "Hvem skrev Hamlet?", "William Shakespeare"),
    "de": ("Was ist die Hauptstadt von Frankreich?", "Paris", "Wer hat Hamlet geschrieben?", "William Shakespeare"),
    "el": ("Ποια είναι η πρωτεύουσα της Γαλλίας;", "Παρίσι", "Ποιος έγραψε τον Άμλετ;", "Ουίλιαμ Σαίξπηρ"),
    "es": ("¿Cuál es la capital de Francia?", "París", "¿Quién escribió Hamlet?", "William Shakespeare"),
    "fa": ("پایتخت فرانسه کجاست؟", "پاریس", "چه کسی هملت را نوشت؟", "ویلیام شکسپیر"),
    "fr": ("Quelle est la capitale de la France ?", "Paris", "Qui a écrit Hamlet ?", "William Shakespeare"),
    "he": ("מהי בירת צרפת?", "פריז", "מי כתב את המלט?", "ויליאם שייקספיר"),
    "hi": ("फ़्रांस की राजधानी क्या है?", "पेरिस", "हैमलेट किसने लिखा?", "विलियम शेक्सपियर"),
    "id": ("Apa ibu kota Prancis?", "Paris", "Siapa yang menulis Hamlet?", "William Shakespeare"),
    "it": ("Qual è la capitale della Francia?", "Parigi", "Chi ha scritto Amleto?", "William Shakespeare"),
    "ja": ("フランスの首都はどこですか？", "パリ", "『ハムレット』を書いたのは誰？", "ウィリアム・シェイクスピア"),
    "ko": ("프랑스의 수도는 어디입니까?", "파리", "햄릿을 쓴 사람은 누구입니까?", "윌리엄 셰익스피어"),
    "nl": ("Wat is de hoofdstad van Frankrijk?", "Parijs", "Wie schreef Hamlet?", "William Shakespeare"),
    "pl": ("Jaka jest stolica Francji?", "Paryż", "Kto napisał Hamleta?", "William Shakespeare"),
    "pt": ("Qual é a capital da França?", "Paris", "Quem escreveu Hamlet?", "William Shakespeare"),
    "ru": ("Какая столица Франции?", "Париж", "Кто написал «Гамлета»?", "Уильям Шекспир"),
    "sv": ("Vad är Frankrikes huvudstad?", "Paris", "Vem skrev Hamlet?", "William Shakespeare"),
    "th": ("เมืองหลวงของฝรั่งเศสคืออะไร", "ปารีส", "ใครเป็นผู้เขียนแฮมเล็ต", "วิลเลียม เชกสเปียร์"),
    "tr": ("Fransa'nın başkenti neresidir?", "Paris", "Hamlet'i kim yazdı?", "William Shakespeare"),
    "uk": ("Яка столиця Франції?", "Париж", "Хто написав «Гамлета»?", "Вільям Шекспір"),
    "vi": ("Thủ đô của Pháp là gì?", "Paris", "Ai đã viết Hamlet?", "William Shakespeare"),
    "zh": ("法国的首都是哪里？", "巴黎", "谁写了《哈姆雷特》？", "威廉·莎士比亚"),
}

#: FLORES-200 codes (NLLB's language tokens) of the languages `EXAMPLES` covers.
FLORES_CODES = {
    "ar": "arb_Arab", "bg": "bul_Cyrl", "ca": "cat_Latn", "cs": "ces_Latn", "da": "dan_Latn", "de": "deu_Latn",
    "el": "ell_Grek", "en": "eng_Latn", "es": "spa_Latn", "fa": "pes_Arab", "fr": "fra_Latn", "he": "heb_Hebr",
    "hi": "hin_Deva", "id": "ind_Latn", "it": "ita_Latn", "ja": "jpn_Jpan", "ko": "kor_Hang", "nl": "nld_Latn",
    "pl": "pol_Latn", "pt": "por_Latn", "ru": "rus_Cyrl", "sv": "swe_Latn", "th": "tha_Thai", "tr": "tur_Latn",
    "uk": "ukr_Cyrl", "vi": "vie_Latn", "zh": "zho_Hans",
}  # fmt: skip


class TranslationError(ValueError):
    """A translator that cannot be used as asked (an unknown language, a wrong number of translations, a failure)."""


def translator_name(translator: Translator) -> str:
    """What a translator's translations are cached under: its `name` attribute, else its function name."""
    return str(getattr(translator, "name", None) or getattr(translator, "__qualname__", type(translator).__name__))


def model_translator(
    model: Any,
    tokenizer: Any,
    *,
    examples: Mapping[str, Sequence[str]] | None = None,
    max_new_tokens: int = 48,
    batch_size: int = 16,
) -> Translator:
    """A translator that asks a causal LM (the model being edited, say) to translate, greedily.

    The prompt shows example texts in the source language, each followed by the target language's version
    ("English: Who wrote Hamlet?\\nGerman: Wer hat Hamlet geschrieben?"), then the text; the first generated line is
    the translation. A text of four words or more, or one that ends in a question mark, is shown `EXAMPLES`'
    questions, a shorter one its answers (a small model shown both copies the pattern, answering a question with a
    name). `examples` adds or replaces languages: `{code: texts}` aligned with `EXAMPLES["en"]` (question, answer,
    question, answer). A small base model translates names and short questions passably and longer sentences
    poorly: measure it (`benchmarks/self_translation.py`), and review the `TranslationCache` before training on it.
    """
    from ..metrics.generation import generate_greedy  # batched greedy decoding, shared with the judge

    table = {**EXAMPLES, **{code: tuple(texts) for code, texts in (examples or {}).items()}}

    def translate(texts: Sequence[str], source: str, target: str) -> list[str]:
        for language in (source, target):
            if language not in table:
                raise TranslationError(
                    f"model_translator has no example texts in {language!r}: pass examples={{{language!r}: "
                    f"[the {len(EXAMPLES['en'])} texts of EXAMPLES['en'] written in {language_name(language)}]}}."
                )
        if len(table[source]) != len(table[target]):
            raise TranslationError(f"The examples in {source!r} and {target!r} are not aligned (different lengths).")
        source_name, target_name = language_name(source), language_name(target)
        pairs = list(zip(table[source], table[target]))

        def prompt(text: str) -> str:
            question = len(text.split()) >= 4 or text.rstrip().endswith(("?", "？", "؟"))
            shown = pairs[0::2] if question else pairs[1::2]
            shots = "".join(f"{source_name}: {a}\n{target_name}: {b}\n" for a, b in shown)
            return f"{shots}{source_name}: {text}\n{target_name}:"

        prompts = [prompt(text) for text in texts]
        budgets = [min(max_new_tokens, 2 * len(tokenizer(text)["input_ids"]) + 8) for text in texts]
        generated = generate_greedy(model, tokenizer, prompts, budgets, batch_size=batch_size, stop_at_line_break=True)
        lines = [tokenizer.decode(ids, skip_special_tokens=True).strip().split("\n")[0].strip() for ids in generated]
        shown = dict(pairs)  # an example's translation given for another text is a copied demonstration, not one
        return ["" if line in shown.values() and shown.get(text) != line else line for text, line in zip(texts, lines)]

    name = getattr(getattr(model, "config", None), "_name_or_path", "") or type(model).__name__
    if examples:  # other examples, other translations: not the cache entries of the built-in ones
        name += "+examples:" + hashlib.sha256(json.dumps(examples, sort_keys=True).encode()).hexdigest()[:8]
    translate.name = f"model:{name}"
    return translate


def hf_translator(
    model: str | os.PathLike | Any,
    tokenizer: Any = None,
    *,
    language_codes: Mapping[str, str] | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 128,
) -> Translator:
    """A translator backed by a Hugging Face sequence-to-sequence model: a Hub id or folder
    (`"facebook/nllb-200-distilled-600M"`, `"facebook/m2m100_418M"`, a Marian `"Helsinki-NLP/opus-mt-en-de"`), or a
    loaded model with its `tokenizer`.

    Many-language models are told the source and target: NLLB by FLORES-200 codes (`FLORES_CODES`), M2M100 by
    its `__xx__` tokens; `language_codes` (`{code: the model's language token}`) overrides or adds. A model of one
    language pair (Marian) is used as it is: ask it only for that pair. Greedy decoding.
    """
    import torch

    if isinstance(model, (str, os.PathLike)):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        tokenizer = tokenizer or AutoTokenizer.from_pretrained(model)
        model = AutoModelForSeq2SeqLM.from_pretrained(model)
    elif tokenizer is None:
        raise TypeError("hf_translator was given a model object without its tokenizer: pass tokenizer=... too.")
    vocab = tokenizer.get_vocab()
    codes = dict(language_codes or {})
    if not codes and "eng_Latn" in vocab:
        codes = dict(FLORES_CODES)
    elif not codes and "__en__" in vocab:
        codes = {code: f"__{code}__" for code in EXAMPLES if f"__{code}__" in vocab}
    model.eval()

    def translate(texts: Sequence[str], source: str, target: str) -> list[str]:
        forced: dict[str, int] = {}
        if codes:
            unknown = [lang for lang in (source, target) if codes.get(lang) not in vocab]
            if unknown:
                raise TranslationError(
                    f"The translation model has no language token for {unknown} (known: {sorted(codes)}); pass "
                    "language_codes={code: the model's token for it} to hf_translator."
                )
            tokenizer.src_lang = codes[source].strip("_") if codes[source].startswith("__") else codes[source]
            forced = {"forced_bos_token_id": vocab[codes[target]]}
        device = next(model.parameters()).device
        out: list[str] = []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start : start + batch_size]), return_tensors="pt", padding=True)
            inputs = {key: batch[key].to(device) for key in ("input_ids", "attention_mask")}
            with torch.no_grad():
                ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, **forced)
            out += [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return out

    translate.name = f"hf:{getattr(model.config, '_name_or_path', '') or type(model).__name__}"
    return translate


class TranslationCache:
    """Translations kept in a JSON file, `{translator: {"en>de": {source text: translation}}}`, sorted and indented
    so that a person can review and correct them; a corrected entry is what the next run trains on.

    Written atomically after each batch of translations, under a lock (runs sharing the file take turns).
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = None if path is None else Path(path).expanduser()
        self.entries: dict[str, dict[str, dict[str, str]]] = {}
        if self.path is not None and self.path.is_file():
            self.entries = self._read()

    def _read(self) -> dict[str, dict[str, dict[str, str]]]:
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise TranslationError(
                f"The translation cache {self.path} cannot be read ({error}); fix the file or remove it."
            ) from error
        if not isinstance(entries, dict) or not all(isinstance(pairs, dict) for pairs in entries.values()):
            raise TranslationError(
                f"The translation cache {self.path} is not {{translator: {{'en>de': {{text: translation}}}}}}."
            )
        return entries

    def get(self, name: str, source: str, target: str) -> dict[str, str]:
        return self.entries.setdefault(name, {}).setdefault(f"{source}>{target}", {})

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.path):
            merged = self._read() if self.path.is_file() else {}
            for name, pairs in self.entries.items():
                for pair, texts in pairs.items():
                    merged.setdefault(name, {}).setdefault(pair, {}).update(texts)
            self.entries = merged
            atomic_write_text(self.path, json.dumps(merged, ensure_ascii=False, indent=1, sort_keys=True) + "\n")


def _translate_all(
    translator: Translator, texts: list[str], source: str, target: str, cache: TranslationCache
) -> dict[str, str]:
    known = cache.get(translator_name(translator), source, target)
    missing = [text for text in dict.fromkeys(texts) if text not in known]
    if missing:
        try:
            output = list(translator(missing, source, target))
        except TranslationError:
            raise
        except Exception as error:
            raise TranslationError(
                f"The translator {translator_name(translator)!r} failed on {source!r} -> {target!r} "
                f"({type(error).__name__}: {error}); fix it or leave {target!r} out of the languages to translate to."
            ) from error
        if len(output) != len(missing) or not all(isinstance(text, str) for text in output):
            raise TranslationError(
                f"The translator {translator_name(translator)!r} returned {len(output)} results for {len(missing)} "
                f"texts ({source!r} -> {target!r}); it must return one string per text, in order."
            )
        known.update({text: translation.strip() for text, translation in zip(missing, output)})
        cache.save()
    return {text: known[text] for text in texts}


def _problem(view: FactView, prompt: str, target: Any, source: str, language: str) -> str | None:
    """Why a translated prompt and target must not be trained on (None: they may).

    The prompt must be written mostly in `language`'s script once a subject kept as it is is set aside; the target,
    often a name, may also stay in the `source` language's script, but not in a third one.
    """
    if not prompt or not str(target).strip():
        return f"an empty translation ({prompt!r} -> {target!r})"
    if prompt == view.prompt.strip():
        return f"the prompt came back untranslated ({prompt!r})"
    share = script_share(prompt.replace(view.subject, "") if view.subject else prompt, language)
    if share is not None and share < MIN_SCRIPT_SHARE:
        return f"the prompt is not written in {language_name(language)}'s script ({prompt!r})"
    if isinstance(target, str):
        shares = [script_share(target, language), script_share(target, source)]
        if None not in shares and max(shares) < MIN_SCRIPT_SHARE:
            return f"the answer is written in neither {language_name(language)}'s nor {language_name(source)}'s script"
    return None


def translate_requests(
    requests: Sequence[EditRequest],
    languages: Sequence[str],
    translator: Translator,
    *,
    cache: TranslationCache | str | os.PathLike | None = None,
) -> list[EditRequest]:
    """`requests` with a machine-written version in each of `languages` they lack, from their edit-language version.

    The prompt, the target and the subject are translated (the subject is kept only where it appears in the
    translated prompt, since subject gates look for it there); versions a request already has are kept as they
    are. A translation that fails `_problem`'s checks is skipped with a warning, leaving that language out of that
    request. Each request's new languages are added to its `machine_translated`.

    Raises:
        TranslationError: the translator failed, returned the wrong number of results, or cannot translate a
            language (its message names the fix).
    """
    cache = cache if isinstance(cache, TranslationCache) else TranslationCache(cache)
    out = list(requests)
    for language in dict.fromkeys(languages):
        wanted = [i for i, request in enumerate(out) if language not in request.views]
        by_source: dict[str, list[int]] = {}
        for i in wanted:
            by_source.setdefault(out[i].edit_language, []).append(i)
        for source, indices in by_source.items():
            views = [out[i].edit for i in indices]
            texts = [text for v in views for text in (v.prompt, v.target, v.subject) if isinstance(text, str) and text]
            written = _translate_all(translator, [t.strip() for t in texts], source, language, cache)
            for i, view in zip(indices, views):
                prompt = written[view.prompt.strip()]
                target = written[view.target.strip()] if isinstance(view.target, str) else view.target
                problem = _problem(view, prompt, target, source, language)
                if problem is not None:
                    logger.warning("Case %s: no %r version: %s.", out[i].case_id, language, problem)
                    continue
                subject = written.get(view.subject.strip()) if view.subject else None
                version = FactView(
                    prompt=prompt,
                    target=target,
                    subject=subject if subject and subject.casefold() in prompt.casefold() else None,
                )
                request = out[i]
                out[i] = replace(
                    request,
                    views={**request.views, language: version},
                    machine_translated=(*request.machine_translated, language),
                )
    return out


def resolve_translator(translator: Translator | str, model: Any = None, tokenizer: Any = None) -> Translator:
    """A translator from a name: `"self"` is `model_translator(model, tokenizer)`, any other string a Hugging Face
    translation model's id or folder (`hf_translator`); a callable is returned as it is."""
    if callable(translator):
        return translator
    if translator == "self":
        if model is None or tokenizer is None:
            raise TranslationError('translator="self" translates with the edited model: pass it and its tokenizer.')
        return model_translator(model, tokenizer)
    if isinstance(translator, str) and translator:
        return hf_translator(translator)
    raise TranslationError(
        f'A translator is "self", a translation model\'s Hub id or folder, or a function; got {translator!r}.'
    )


def with_versions(request: EditRequest, translated: EditRequest) -> EditRequest:
    """`request` with the machine-written versions of `translated` (the same case, from `translate_requests`)."""
    machine = [lang for lang in translated.machine_translated if lang not in request.views]
    return replace(
        request,
        views={**request.views, **{lang: translated.views[lang] for lang in machine}},
        machine_translated=(*request.machine_translated, *machine),
    )


__all__ = [
    "EXAMPLES",
    "FLORES_CODES",
    "MIN_SCRIPT_SHARE",
    "TranslationCache",
    "TranslationError",
    "Translator",
    "hf_translator",
    "model_translator",
    "resolve_translator",
    "translate_requests",
    "translator_name",
    "with_versions",
]
