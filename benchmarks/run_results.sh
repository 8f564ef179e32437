#!/usr/bin/env bash
# The `peft-mpn bench` runs behind docs/results.md, on Gemma-3-270M, then the page itself.
#
#   bash benchmarks/run_results.sh            # from the repo root; DATA=... OUT=... to move the folders
#   bash benchmarks/run_results.sh --dry-run  # print the commands only
#
# Every method on MzsRE (all 12 languages) and on BMIKE-53 zsRE and CounterFact (16 languages across scripts),
# 100 edits each (seed 0), single-edit mode and sequential mode (100 in a row). MPN and LAFN train on the parallel
# versions in de fr es ru zh ("overlapping": those languages are also judged; the other languages are their
# disjoint reading); on BMIKE-53, MPN also runs with augmentation languages that are not judged at all
# ("disjoint": cs bg fa da ca). T-Patcher and the baselines see the English edit only.
# A run whose JSON exists is skipped, so the script can be restarted after an interruption.
set -euo pipefail

DATA=${DATA:-../shared/data}
OUT=${OUT:-results/bench}
SEED=${SEED:-0}
EDITS=${EDITS:-100}
METHODS=${METHODS:-"mpn t-patcher lafn ft-l ft-m icl"}
AUGMENT="de fr es ru zh"
DISJOINT="cs bg fa da ca"  # chosen so that no extra BMIKE-53 case is dropped: same cases as the others
BMIKE_LANGUAGES="en de fr es ru zh ja ar hi th tr vi ko he el uk"
DRY_RUN=${1:-}

run() {  # run OUTPUT_NAME ARGS...: one bench run, skipped when its JSON exists
  local output="$OUT/$1.json"
  shift
  if [[ -f "$output" ]]; then
    echo "skip $output (exists)"
    return
  fi
  local command=(peft-mpn bench "$@" --num-edits "$EDITS" --seed "$SEED" --output "$output")
  echo "${command[*]}"
  [[ "$DRY_RUN" == "--dry-run" ]] || "${command[@]}"
}

augment_for() {  # the --augment-languages of a method
  case "$1" in
    mpn | lafn) echo "--augment-languages $AUGMENT" ;;
    *) echo "--augment-languages" ;;
  esac
}

for mode in single sequential; do
  flag=$([[ "$mode" == sequential ]] && echo --sequential || true)
  for method in $METHODS; do
    # shellcheck disable=SC2046  # word splitting of the language lists is intended
    run "mzsre_${method}_${mode}" --method "$method" --dataset mzsre --data "$DATA/mzsre" \
      $(augment_for "$method") $flag
    for split in zsre counterfact; do
      # shellcheck disable=SC2046
      run "bmike53-${split}_${method}_${mode}" --method "$method" --dataset bmike53 --data "$DATA/bmike53" \
        --split "$split" --eval-languages $BMIKE_LANGUAGES $(augment_for "$method") $flag
      if [[ "$method" == mpn ]]; then
        # shellcheck disable=SC2086
        run "bmike53-${split}_mpn-disjoint_${mode}" --method mpn --dataset bmike53 --data "$DATA/bmike53" \
          --split "$split" --eval-languages $BMIKE_LANGUAGES --augment-languages $DISJOINT $flag
      fi
    done
  done
done

[[ "$DRY_RUN" == "--dry-run" ]] || python benchmarks/results.py "$OUT" --docs docs
