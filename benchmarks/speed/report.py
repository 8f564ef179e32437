"""The Markdown summary of an `edit_speed.py` report."""

from __future__ import annotations

from typing import Any

from .configs import VARIANTS


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: configurations, memory, prefix-caching exactness, inference overhead."""
    args = report["args"]
    machine = report["machine"]
    lines = [
        "# MPN edit speed",
        "",
        f"Model `{report['model']}`, patch layer {report['layer']}, MzsRE edits in English with augmentation "
        f"{' '.join(args['augment_languages'])}; step budget {report['max_steps']}; seed {args['seed']}. "
        f"{machine['cpu_count']} cores ({machine['cpu_model']}), torch {machine['torch']} with "
        f"{machine['torch_threads']} threads; load average {machine['load_average_start'][0]:.1f} at start, "
        f"{report['load_average_end'][0]:.1f} at the end (mean over the edits {report['load_average_edits']:.1f}); "
        f"OMP_WAIT_POLICY={machine['omp_wait_policy']}.",
        "",
        *[f"- busy at start: {p}" for p in machine["other_busy_processes"]],
        *[f"- busy at end: {p}" for p in report["other_busy_processes_end"]],
        "",
        f"`cached` ran on cases 0..{args['num_edits'] - 1}; the other configurations on cases "
        f"0..{args['slow_edits'] - 1} only (`--slow-edits {args['slow_edits']}`). Ratios are on shared cases.",
        "",
        "| config | start | prefix cache | vocab | edits | median s/edit | p10 | p90 | mean | median CPU s | "
        "steps mean (median) | s/step | edited/unfixed/skipped | peak RSS MB (Δ median) | × vs cached | "
        "baseline ÷ this |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for variant in VARIANTS:
        s = report["configs"][variant.name]
        r = report["ratios"][variant.name]
        vs_cached = r.get("vs_cached", {}).get("median_seconds_ratio")
        vs_base = r.get("vs_baseline", {}).get("median_seconds_ratio")
        status = s["status"]
        lines.append(
            f"| {variant.name} | {'warm' if variant.warm_start else 't-patcher'} | "
            f"{'on' if variant.prefix_cache else 'off'} | "
            f"{variant.vocab_candidates if variant.vocab_candidates else 'full'} | {s['edits']} | "
            f"{s['seconds']['median']:.1f} | {s['seconds']['p10']:.1f} | {s['seconds']['p90']:.1f} | "
            f"{s['seconds']['mean']:.1f} | {s['cpu_seconds']['median']:.1f} | "
            f"{s['steps']['mean']:.0f} ({s['steps']['median']:.0f}) | "
            f"{s['total_seconds_per_step']:.2f} | {status['edited']}/{status['unfixed']}/{status['skipped']} | "
            f"{s['rss_peak_mb']:.0f} ({s['rss_delta_mb']['median']:+.0f}) | "
            f"{'1.00' if vs_cached is None else f'{vs_cached:.2f}'} | "
            f"{'1.00' if vs_base is None else f'{1 / vs_base:.2f}'} |"
        )
    lines += [
        "",
        "× vs cached / baseline ÷ this: ratios of median seconds per edit on the shared cases. "
        "s/step: total seconds ÷ total steps (includes the per-edit setup).",
        "",
        "Per-step time ratios on shared cases: "
        + ", ".join(
            f"{name} {report['ratios'][name]['vs_cached']['seconds_per_step_ratio']:.2f}× cached"
            for name in report["ratios"]
            if "vs_cached" in report["ratios"][name] and report["ratios"][name]["vs_cached"]["seconds_per_step_ratio"]
        )
        + ".",
        "",
    ]
    mem = report["memory"]
    lines += [
        f"**Memory.** Memory bank: {mem['bank']['vectors']} vectors × {mem['bank']['dim']} "
        f"({mem['bank']['mb']:.1f} MB) from {mem['bank']['texts']} locality prompts of MzsRE cases "
        f"{mem['bank']['cases']}, built in {mem['bank']['build_seconds']:.1f} s. RSS after loading the model "
        f"{mem['rss_after_load_mb']:.0f} MB; peak RSS of the process {mem['ru_maxrss_mb']:.0f} MB.",
        "",
    ]
    exact = report["exactness"]
    if exact:
        lines += [
            "**Prefix caching exactness** (same seed, same case):",
            "",
            "| pair | case | status | steps | patches | same | max abs Δ patch | max abs patch |",
            "|---|---|---|---|---|---|---:|---:|",
        ]
        for c in exact:
            diff = "shape differs" if c["max_abs_patch_diff"] is None else f"{c['max_abs_patch_diff']:.2e}"
            lines.append(
                f"| {c['pair']} | {c['case']} | {'/'.join(c['status'])} | {c['steps'][0]}/{c['steps'][1]} | "
                f"{c['patches'][0]}/{c['patches'][1]} | {'yes' if c['same_status_steps_patches'] else '**no**'} | "
                f"{diff} | {c['max_abs_patch_value']:.2f} |"
            )
        lines.append("")
    over = report.get("inference_overhead")
    if over:
        lines += [
            f"**Inference overhead** ({over['patches']} patches: {over['adapter']}; batch "
            f"{over['batch'][0]}×{over['batch'][1]} tokens):",
            "",
            "| call | base median s | edited median s | edited ÷ base |",
            "|---|---:|---:|---:|",
        ]
        for label, title in (
            ("forward", f"forward ({over['forward_repeats']} repeats)"),
            ("generate", f"generate 16 tokens ({over['generate_repeats']} repeats)"),
        ):
            o = over[label]
            lines.append(
                f"| {title} | {o['base_seconds']['median']:.3f} | {o['edited_seconds']['median']:.3f} | "
                f"{o['ratio_median']:.3f} |"
            )
        lines += [
            "",
            f"Edited vs base agreement on this unrelated text: argmax {over['forward_argmax_agreement']:.3f}, "
            f"generated tokens {over['generated_tokens_agreement']:.3f}.",
            "",
        ]
    return "\n".join(lines)
