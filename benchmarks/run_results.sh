#!/usr/bin/env bash
# The `peft-mpn bench` runs behind docs/results.md, on Gemma-3-270M, then the page itself.
#
#   bash benchmarks/run_results.sh              # from the repo root; DATA=... OUT=... to move the folders
#   bash benchmarks/run_results.sh --dry-run    # print the commands only
#   bash benchmarks/run_results.sh --calibrate  # cheap first pass: 10 edits per method, MzsRE, single mode
#   bash benchmarks/run_results.sh --headline   # the page's generation headline: every method, 30 edits
#   bash benchmarks/run_results.sh --lifelong   # 1,000 edits in a row with curves: MPN, T-Patcher, FT-M augmented
#
# Every method on MzsRE (all 12 languages) and on BMIKE-53 zsRE and CounterFact (16 languages across scripts),
# 100 edits each (seed 0), single-edit mode and sequential mode (100 in a row). MPN and LAFN train on the parallel
# versions in de fr es ru zh ("overlapping": those languages are also judged; the other languages are their
# disjoint reading); on BMIKE-53, MPN also runs with augmentation languages that are not judged at all
# ("disjoint": cs bg fa da ca). T-Patcher and the baselines see the English edit only; FT-M also runs on the
# de fr es ru zh versions ("FT with augmentation", the fine-tuning reading of MPN's augmentation).
# --headline runs every method (MPN and LAFN with de fr es ru zh) on the first HEADLINE_EDITS=30 cases of BMIKE-53
# CounterFact, single mode, all 16 languages, judged on generated text as well as teacher-forced (25 to 40 minutes a
# method on 2 cores; METHODS="mpn t-patcher" runs a subset), into $OUT/headline and benchmarks/results/headline/;
# the page opens with them.
# --lifelong streams LIFELONG_EDITS=1000 edits in a row from BMIKE-53 zsRE and CounterFact together (1,773 cases in
# en de fr es ru zh ja ar) with MPN (de fr es ru zh), T-Patcher and FT-M on the same versions, measured every 100
# edits (retention, generality, locality, seconds per edit, memory, adapter size, tokens/s) on a seeded sample of
# CURVE_SAMPLE=50 of the edited cases (--judge-sample: the same sample is the final result), into $OUT/lifelong and
# benchmarks/results/lifelong/. A stream saves its state every 10 edits and resumes after an interruption; the MPN
# stream takes several hours on 2 cores (about 12 s an edit and 17 s a judged case).
# --calibrate runs each method on EDITS=10 MzsRE cases in single mode into results/bench-calibration and writes
# no page: check that every method runs and read its seconds per edit before starting the full set.
# After the bench runs comes the classifier-editing task (benchmarks/classifier_task.py, MPN's classifier setting).
# A run whose files all exist (its JSON and .md, and for a bench run its .png) is skipped, so the script can be
# restarted after an interruption. At the end every run is kept gzip'd in benchmarks/results/ and docs/results.md is
# built from there.
set -euo pipefail

DRY_RUN=""
CALIBRATE=""
HEADLINE=""
LIFELONG=""
for argument in "$@"; do
  case "$argument" in
    --dry-run) DRY_RUN=1 ;;
    --calibrate) CALIBRATE=1 ;;
    --headline) HEADLINE=1 ;;
    --lifelong) LIFELONG=1 ;;
    *)
      echo "usage: bash benchmarks/run_results.sh [--dry-run] [--calibrate | --headline | --lifelong]" \
        "(unknown argument: $argument)" >&2
      exit 2
      ;;
  esac
done

DATA=${DATA:-../shared/data}
SEED=${SEED:-0}
ALL_METHODS="mpn t-patcher lafn lafn-ungated ft-l ft-m icl icl-gated"
EXTRA=""  # options every run of this mode takes
if [[ -n "$CALIBRATE" ]]; then
  OUT=${OUT:-results/bench-calibration}
  EDITS=${EDITS:-10}
  MODES="single"
  DATASETS="mzsre"
elif [[ -n "$HEADLINE" ]]; then
  OUT=${OUT:-results/bench}/headline
  EDITS=${HEADLINE_EDITS:-30}
  MODES="single"
  DATASETS="bmike53-counterfact"
elif [[ -n "$LIFELONG" ]]; then
  OUT=${OUT:-results/bench}/lifelong
  EDITS=${LIFELONG_EDITS:-1000}
  MODES="sequential"
  DATASETS="bmike53-zsre+counterfact"
  ALL_METHODS="mpn t-patcher ft-m-augmented"
  CURVE_SAMPLE=${CURVE_SAMPLE:-50}
  EXTRA="--curve-every 100 --curve-sample $CURVE_SAMPLE --judge-sample $CURVE_SAMPLE"
else
  OUT=${OUT:-results/bench}
  EDITS=${EDITS:-100}
  MODES="single sequential"
  DATASETS="mzsre bmike53-zsre bmike53-counterfact"
fi
AUGMENT="de fr es ru zh"
DISJOINT="cs bg fa da ca"  # chosen so that no extra BMIKE-53 case is dropped: same cases as the others
BMIKE_LANGUAGES="en de fr es ru zh ja ar hi th tr vi ko he el uk"
[[ -n "$LIFELONG" ]] && BMIKE_LANGUAGES="en de fr es ru zh ja ar"  # a judged case costs about 2.5x with all 16
METHODS=${METHODS:-$ALL_METHODS}
# The unedited model's judgements are the same for every method on the same cases: judged once, kept here.
JUDGE_CACHE=${JUDGE_CACHE:-$HOME/.cache/peft_mpn/judged}

run_once() {  # run_once OUTPUT "SUFFIXES" COMMAND...: the command, skipped when OUTPUT (a .json) exists and so
  # does each file beside it with one of SUFFIXES for .json: a run killed before it wrote them all runs again
  local output="$1" suffixes="$2" suffix complete=1
  shift 2
  [[ -f "$output" ]] || complete=""
  for suffix in $suffixes; do
    [[ -f "${output%.json}$suffix" ]] || complete=""
  done
  if [[ -n "$complete" ]]; then
    echo "skip $output (exists)"
    return
  fi
  echo "$*"
  [[ -n "$DRY_RUN" ]] || "$@"
}

run() {  # run OUTPUT_NAME ARGS...: one bench run (it writes the .md table and the .png plot, then the JSON)
  local output="$OUT/$1.json"
  shift
  # shellcheck disable=SC2086  # EXTRA is a list of options
  run_once "$output" ".md .png" peft-mpn bench "$@" --num-edits "$EDITS" --seed "$SEED" --judge-cache "$JUDGE_CACHE" \
    $EXTRA --output "$output"
}

data_for() {  # the --dataset/--data/--split/--eval-languages of a dataset name
  case "$1" in
    mzsre) echo "--dataset mzsre --data $DATA/mzsre" ;;
    bmike53-*) echo "--dataset bmike53 --data $DATA/bmike53 --split ${1#bmike53-} --eval-languages $BMIKE_LANGUAGES" ;;
  esac
}

augment_for() {  # the --method and --augment-languages of a method's run name
  case "$1" in
    mpn | lafn) echo "--method $1 --augment-languages $AUGMENT" ;;
    ft-m-augmented) echo "--method ft-m --augment-languages $AUGMENT" ;;
    lafn-ungated) echo "--method lafn --augment-languages $AUGMENT --editor-option subject_gate_depth=null" ;;
    *) echo "--method $1 --augment-languages" ;;
  esac
}

for mode in $MODES; do
  flag=$([[ "$mode" == sequential ]] && echo --sequential || true)
  for method in $METHODS; do
    for dataset in $DATASETS; do
      # shellcheck disable=SC2046  # word splitting of the option lists is intended
      run "${dataset}_${method}_${mode}" $(data_for "$dataset") $(augment_for "$method") $flag
      if [[ "$method" == mpn && "$dataset" == bmike53-* && -z "$HEADLINE$LIFELONG" ]]; then
        # shellcheck disable=SC2046,SC2086
        run "${dataset}_mpn-disjoint_${mode}" --method mpn $(data_for "$dataset") --augment-languages $DISJOINT $flag
      fi
      if [[ "$method" == ft-m && -z "$CALIBRATE" && -z "$HEADLINE" ]]; then
        # shellcheck disable=SC2046,SC2086
        run "${dataset}_ft-m-augmented_${mode}" --method ft-m $(data_for "$dataset") --augment-languages $AUGMENT $flag
      fi
    done
  done
done

if [[ -z "$CALIBRATE$HEADLINE$LIFELONG" ]]; then
  # MPN's classifier setting (fact verification from BMIKE-53 CounterFact): its own section of the page.
  run_once "$OUT/classifier_task.json" ".md" python benchmarks/classifier_task.py --data "$DATA/bmike53/counterfact" \
    --output "$OUT/classifier_task.json"
fi

[[ -n "$DRY_RUN" || -n "$CALIBRATE" ]] && exit 0
# The repository keeps every run gzip'd (benchmarks/results/), and the page is built from those copies, so
# `python benchmarks/results.py benchmarks/results --docs docs` rebuilds it on any machine.
KEPT=benchmarks/results$([[ -n "$HEADLINE" ]] && echo /headline || true)$([[ -n "$LIFELONG" ]] && echo /lifelong || true)
mkdir -p "$KEPT"
for result in "$OUT"/*.json; do
  [[ -f "$result" ]] && gzip -9 -n -c "$result" > "$KEPT/$(basename "$result").gz"
done
python benchmarks/results.py benchmarks/results --docs docs
