"""`Bench`: the model, the shared memory bank, the timed edits and the inference overhead of their patches."""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .configs import REFERENCE, VARIANTS, EditorVariant, data_folder
from .machine import PeakRSS, mb
from .summary import summarise


class Bench:
    """The model with an MPN adapter, the shared memory bank and the measurements made on them."""

    def __init__(self, args: argparse.Namespace) -> None:
        from peft import get_peft_model

        from peft_mpn import MPNConfig
        from peft_mpn.data.loaders import load_mzsre
        from peft_mpn.editing import MPNEditor, MPNEditorConfig
        from peft_mpn.models import load_model

        self.args = args
        self.MPNConfig, self.MPNEditor, self.MPNEditorConfig = MPNConfig, MPNEditor, MPNEditorConfig
        self.languages = ["en", *[lang for lang in args.augment_languages if lang != "en"]]
        data = data_folder(args)
        self.requests = load_mzsre(data, languages=self.languages, limit=args.num_edits, start=0)
        self.memory_requests = load_mzsre(
            data, languages=self.languages, limit=args.memory_cases, start=args.memory_start
        )
        self.warmup_request = load_mzsre(
            data, languages=self.languages, limit=1, start=args.memory_start + args.memory_cases
        )[0]
        self.rss = PeakRSS()
        started = time.perf_counter()
        base, self.tokenizer = load_model(args.model, progress=not args.no_progress)
        self.load_seconds = time.perf_counter() - started
        self.rss_after_load = self.rss.current()
        self.adapter_count = 0
        self.model = get_peft_model(base, self._adapter_config(), adapter_name=self._next_adapter_name())
        self.model.eval()
        # the prompts the bench edits and judges: the model family's format (e.g. two answered questions first)
        from peft_mpn.data.prompts import format_requests, resolve_prompt_format

        self.template = resolve_prompt_format(args.prompt_format, self.model)
        self.requests = format_requests(self.requests, self.template)
        self.memory_requests = format_requests(self.memory_requests, self.template)
        (self.warmup_request,) = format_requests([self.warmup_request], self.template)

        # The memory bank, built once (the edited cases are disjoint from the memory cases).
        editor = self._editor(self.MPNEditorConfig(**self._editor_kwargs(VARIANTS[0])))
        started = time.perf_counter()
        editor.add_unrelated_from_requests(self.memory_requests)
        self.memory_seconds = time.perf_counter() - started
        self.memory = editor.memory
        self.subjects = editor.subjects  # the other subjects that neighbour questions are made from
        self.layer_name = editor.layer_name
        vectors = self.memory.vectors
        self.memory_info = {
            "cases": f"{args.memory_start}..{args.memory_start + args.memory_cases - 1}",
            "languages": self.languages,
            "texts": sum(1 for r in self.memory_requests for v in r.views.values() if v.locality_prompt),
            "vectors": len(self.memory),
            "dim": int(vectors.shape[1]),
            "mb": mb(vectors.numel() * vectors.element_size()),
            "build_seconds": self.memory_seconds,
        }

    # -- adapters and editors --------------------------------------------------------------------------------
    def _adapter_config(self):
        return self.MPNConfig(layers_to_transform=[self.args.layer])

    def _next_adapter_name(self) -> str:
        self.adapter_count += 1
        return f"bench{self.adapter_count}"

    def fresh_adapter(self) -> str:
        """Replace the adapter with a new, empty one: every edit starts from the base model's state."""
        old = self.model.active_adapter
        name = self._next_adapter_name()
        self.model.add_adapter(name, self._adapter_config())
        self.model.set_adapter(name)
        self.model.delete_adapter(old)
        assert self.model.base_model.num_patches(name) == 0
        return name

    def _editor_kwargs(self, variant: EditorVariant) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "augment_languages": self.languages[1:],
            "prefix_cache": variant.prefix_cache,
            "vocab_candidates": variant.vocab_candidates,
            "warm_start": variant.warm_start,
            "seed": self.args.seed,
        }
        if self.args.max_steps is not None:
            kwargs["max_steps"] = self.args.max_steps
        return kwargs

    def _editor(self, config, adapter_name: str | None = None):
        return self.MPNEditor(self.model, self.tokenizer, config, adapter_name=adapter_name, progress=False)

    def editor_for(self, variant: EditorVariant, **overrides: Any):
        """A fresh adapter, a fresh editor (fresh seed) and a copy of the shared memory bank and subjects."""
        config = self.MPNEditorConfig(**{**self._editor_kwargs(variant), **overrides})
        editor = self._editor(config, self.fresh_adapter())
        editor.memory = copy.deepcopy(self.memory)
        editor.subjects = copy.deepcopy(self.subjects)
        return editor

    # -- 1. edit latency -------------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """One short edit per configuration, untimed: lazy initialisation out of the way."""
        for variant in VARIANTS:
            self.editor_for(variant, max_steps=2).edit(self.warmup_request)

    def one_edit(self, variant: EditorVariant, request) -> tuple[dict[str, Any], Any]:
        """One timed edit from a fresh adapter: its record and the patches it learned (keys, bias, values)."""
        editor = self.editor_for(variant)
        before = self.rss.reset()
        cpu = time.process_time()
        result = editor.edit(request)
        cpu = time.process_time() - cpu
        peak = self.rss.peak
        patches = editor.layer.patches(editor.adapter_name)
        patches = tuple(t.detach().clone() for t in (patches.keys, patches.bias, patches.values))
        record = {
            "case": request.case_id,
            "status": result.status,
            "steps": result.steps,
            "patches": result.patches_added,
            "seconds": result.seconds,
            "cpu_seconds": cpu,
            "seconds_per_step": result.seconds / result.steps if result.steps else None,
            "fixed_languages": result.fixed_languages,
            "losses": result.losses,
            "rss_before_mb": mb(before),
            "rss_peak_mb": mb(peak),
            "rss_delta_mb": mb(peak - before),
            "load_average": os.getloadavg()[0],
        }
        return record, patches

    def latency(self) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[Any]]]:
        """Every configuration's timed edits, interleaved case by case: records and patches per configuration."""
        args = self.args
        plan = [
            (i, variant)
            for i in range(args.num_edits)
            for variant in VARIANTS
            if variant.name == REFERENCE or i < args.slow_edits
        ]
        records: dict[str, list[dict[str, Any]]] = {v.name: [] for v in VARIANTS}
        patches: dict[str, list[Any]] = {v.name: [] for v in VARIANTS}
        bar = tqdm(plan, desc="edits", disable=args.no_progress, dynamic_ncols=True)
        for i, variant in bar:
            bar.set_postfix(case=i, config=variant.name)
            record, learned = self.one_edit(variant, self.requests[i])
            records[variant.name].append(record)
            patches[variant.name].append(learned)
            tqdm.write(
                f"case {i:>3} {variant.name:<16} {record['status']:<8} steps={record['steps']:>4} "
                f"patches={record['patches']} {record['seconds']:8.2f} s (cpu {record['cpu_seconds']:.2f} s, "
                f"load {record['load_average']:.1f})",
                file=sys.stderr,
            )
            self.checkpoint({"partial_edits": records})
        return records, patches

    # -- 3. inference overhead -------------------------------------------------------------------------------
    def fixed_batch(self, rows: int = 8, length: int = 32) -> dict[str, torch.Tensor]:
        """``rows`` x ``length`` tokens of real, unrelated text (MzsRE prompts past the memory cases)."""
        from peft_mpn.data.loaders import load_mzsre

        data = data_folder(self.args)
        start = self.args.memory_start + self.args.memory_cases + 1
        texts = [r.edit.prompt for r in load_mzsre(data, languages=["en"], limit=200, start=start)]
        ids = self.tokenizer(" ".join(texts), add_special_tokens=False)["input_ids"]
        needed = rows * (length - 1)
        if len(ids) < needed:
            raise RuntimeError(f"Not enough text for a {rows}x{length} batch.")
        body = torch.tensor(ids[:needed]).view(rows, length - 1)
        bos = self.tokenizer.bos_token_id
        first = torch.full((rows, 1), bos if bos is not None else body[0, 0].item())
        input_ids = torch.cat([first, body], dim=1)
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}

    def overhead_adapter(self, patches: list[Any]) -> tuple[str, int, str]:
        """The adapter the overhead is measured with: its name, number of patches and how it was made."""
        args = self.args
        count = min(args.overhead_edits, args.num_edits) if args.overhead_source == "latency" else args.overhead_edits
        if args.overhead_source == "latency":
            name = self.fresh_adapter()
            from peft_mpn.tuners.mpn import PatchSet

            for keys, bias, values in patches[:count]:
                if len(keys):
                    self.model.base_model.add_patches(self.layer_name, PatchSet(keys, bias, values), name)
            how = f"patches of the first {count} timed '{REFERENCE}' edits, stacked on one fresh adapter"
        else:
            from peft_mpn.data.loaders import load_mzsre

            data = data_folder(args)
            requests = load_mzsre(data, languages=self.languages, limit=count, start=0)
            editor = self.editor_for(VARIANTS[0])
            name = editor.adapter_name
            for request in tqdm(requests, desc="sequential edits", disable=args.no_progress):
                editor.edit(request)
            how = f"{count} sequential '{REFERENCE}' edits (MzsRE cases 0..{count - 1}) on one fresh adapter"
        return name, self.model.base_model.num_patches(name), how

    def time_calls(self, calls: dict[str, Any], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
        """Alternate the calls (A B A B ...) so that load drift hits them alike."""
        times: dict[str, list[float]] = {name: [] for name in calls}
        for round_ in range(warmup + repeats):
            for name, call in calls.items():
                started = time.perf_counter()
                call()
                elapsed = time.perf_counter() - started
                if round_ >= warmup:
                    times[name].append(elapsed)
        return times

    def inference_overhead(self, patches: list[Any]) -> dict[str, Any]:
        """Forward and ``generate`` latency with the patches vs the base, and how often their outputs agree."""
        args = self.args
        name, num_patches, how = self.overhead_adapter(patches)
        batch = self.fixed_batch()
        model = self.model
        pad = self.tokenizer.pad_token_id

        def forward(enabled: bool) -> Any:
            def run() -> torch.Tensor:
                with torch.no_grad():
                    if enabled:
                        return model(**batch).logits
                    with model.disable_adapter():
                        return model(**batch).logits

            return run

        def generate(enabled: bool) -> Any:
            def run() -> torch.Tensor:
                kwargs = dict(max_new_tokens=16, min_new_tokens=16, do_sample=False, pad_token_id=pad)
                with torch.no_grad():
                    if enabled:
                        return model.generate(**batch, **kwargs)
                    with model.disable_adapter():
                        return model.generate(**batch, **kwargs)

            return run

        forward_times = self.time_calls({"base": forward(False), "edited": forward(True)}, args.repeats)
        generate_times = self.time_calls(
            {"base": generate(False), "edited": generate(True)}, args.generate_repeats, warmup=1
        )
        with torch.no_grad():
            base_logits, edited_logits = forward(False)(), forward(True)()
            base_tokens, edited_tokens = generate(False)(), generate(True)()
        new = batch["input_ids"].shape[1]
        result: dict[str, Any] = {
            "adapter": how,
            "patches": num_patches,
            "batch": list(batch["input_ids"].shape),
            "generate_new_tokens": 16,
            "forward_repeats": args.repeats,
            "generate_repeats": args.generate_repeats,
            "forward_argmax_agreement": float((base_logits.argmax(-1) == edited_logits.argmax(-1)).float().mean()),
            "generated_tokens_agreement": float((base_tokens[:, new:] == edited_tokens[:, new:]).float().mean()),
        }
        for label, times in (("forward", forward_times), ("generate", generate_times)):
            base, edited = statistics.median(times["base"]), statistics.median(times["edited"])
            result[label] = {
                "base_seconds": summarise(times["base"]),
                "edited_seconds": summarise(times["edited"]),
                "ratio_median": edited / base,
            }
        return result

    # -- output ----------------------------------------------------------------------------------------------
    def checkpoint(self, payload: dict[str, Any]) -> None:
        """The edits so far, next to the output (``.partial.json``), in case the run stops."""
        path = Path(self.args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".partial.json")
        tmp.write_text(json.dumps(payload, indent=2, default=str))
