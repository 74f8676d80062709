from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SPLITS = ("in_domain", "out_domain", "overall")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--task",
        required=True,
        help="task or scorer: wattbot (CSV), coqa, qa (squad), boolq, medqa (mcq), math, exact, weighted, module:function",
    )
    p.add_argument(
        "--predictions",
        required=True,
        help="predictions.jsonl/results.json, CoQA's [{id, turn_id, answer}], SQuAD-style {id: answer}, "
        "or weighted rows",
    )
    p.add_argument("--gold", help="gold file: CoQA dataset JSON, SQuAD JSON, rows of {id, answers}, weighted rows")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    # Here, not at the top: every command's module is imported to build `--help`, and scoring
    # pulls in numpy.
    from orchestrator.scoring.offline import score_file

    result = score_file(args.task, Path(args.predictions), Path(args.gold) if args.gold else None)
    for warning in result.get("warnings") or []:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    line = f"{args.task}: {result['n']} scored"
    if "predicted" in result:  # an official headline: every gold item counts, a missing one as 0
        line += f", {result['predicted']} of them predicted (a missing prediction counts 0, as the official evaluator)"
    print(line)
    for name, value in result["metrics"].items():
        ci = (result.get("ci") or {}).get(name)
        ci_text = f"  95% CI [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
        print(f"  {name:<22} {value:.4f}{ci_text}" if isinstance(value, float) else f"  {name:<22} {value}")
    if "in_domain" in result:  # CoQA: the official breakdown by story source (a missing turn counts 0)
        print(f"  {'by domain':<22} {'em':>7} {'f1':>7} turns")
        rows = {**{k: v for k, v in result["domains"].items() if v["turns"]}, **{k: result[k] for k in SPLITS}}
        for name, d in rows.items():
            print(f"  {name:<22} {d['em']:>7.4f} {d['f1']:>7.4f} {d['turns']}")
    if result["missing"]:
        shown = ", ".join(result["missing"][:5]) + (" ..." if len(result["missing"]) > 5 else "")
        print(f"  missing predictions: {len(result['missing'])} ({shown})")
    return 0
