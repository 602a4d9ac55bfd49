"""README.md as a newcomer runs it: every shell command as written, timed, beside the duration README states.

    python benchmarks/readme_walk.py --json runs/walk.json                     # this CPU as it is
    python benchmarks/readme_walk.py --cap avx2 --json runs/walk-avx2.json     # the same CPU limited to AVX2
    python benchmarks/readme_walk.py --skip "shipped model's quality" --only "# 300 steps" ...

tests/integration/test_readme.py checks that every block runs (with its step counts scaled down); this walk checks
the durations README promises (issue 33: within 2x on the machine they name). It runs in a fresh folder that links
the clone's `pretrained/` and `docs/`, with the interpreter it is started with on PATH (README's install done).
`bash quickstart.sh` runs in a fresh `git clone` of this checkout, installing its own venv as a newcomer's would.

A command is a line and its `\\` continuations; the comment lines above it and the comment at its end are its
description, which holds README's stated duration ("(70 s; AVX2: ~130 s)", "55 min"). The commands of one block
run in one bash process (so `I=...; P=...` carry over) with a timestamp before each; the Python block runs alone.
`--install` runs README's install block first, as written, in a fresh clone (pip from the registry), and then
every other block in that clone with its .venv first on PATH: the newcomer's path exactly.
The blocks README does not mean to be run here are those test_readme.py names (install, the test suite, the demo
server, the two-machine launch). `--cap avx2` sets ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2 for every
command (benchmarks/avx2_emulation.py: right in kind, about 10x too kind to bf16, which `auto` does not use).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
INSTALL = "python3 -m venv .venv"
NOT_HERE = (INSTALL, 'pip install ".[demo]"', 'pip install -e ".[test]"', "# Two machines")
CAPS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}
STATED = re.compile(r"\((?:[^()]*?)?(\d+(?:\.\d+)?) (s|min)\b")
MARK = "@@walk"
OUTPUT_LINES = 40  # of what each command prints, kept in the report


def commands(block: str) -> list[tuple[str, str]]:
    """(description, command) pairs of a shell block: comment lines belong to the command below them."""
    pairs, comments, lines = [], [], []
    for line in block.splitlines():
        if not lines and (not line.strip() or line.lstrip().startswith("#")):
            comments.append(line.strip().lstrip("# "))
            continue
        lines.append(line)
        if not line.rstrip().endswith("\\"):
            command = "\n".join(lines)
            trailing = command.rsplit(" # ", 1)[1] if " # " in command else ""
            pairs.append((" ".join(c for c in comments + [trailing] if c), command))
            comments, lines = [], []
    return pairs


def stated_seconds(description: str) -> float | None:
    """The duration README states for a command on the AVX-512 machine (the first "(N s" or "N min")."""
    match = STATED.search(description) or re.search(r"(\d+(?:\.\d+)?) (s|min)\b", description)
    if not match:
        return None
    return float(match.group(1)) * (60 if match.group(2) == "min" else 1)


def run_block(pairs: list[tuple[str, str]], folder: Path, env: dict,
              timeout: float) -> tuple[list[float], list[str], int, str]:
    """Run the commands in one bash, a timestamp on stderr and a marker on stdout before each and at the end;
    their wall seconds, the last lines each printed, the exit status and the end of stderr."""
    script = []
    for i, (_, command) in enumerate(pairs):
        script += [f'echo "{MARK} {i} $(date +%s.%N)" | tee /dev/stderr', command]
    script.append(f'echo "{MARK} end $(date +%s.%N)" | tee /dev/stderr')
    result = subprocess.run(["bash", "-eo", "pipefail", "-c", "\n".join(script)], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=timeout)
    stamps = [float(line.split()[2]) for line in result.stderr.splitlines() if line.startswith(MARK)]
    seconds = [round(b - a, 1) for a, b in zip(stamps, stamps[1:])]
    sections = re.split(rf"^{MARK} .*$\n?", result.stdout, flags=re.M)[1:]
    outputs = ["\n".join(section.splitlines()[-OUTPUT_LINES:]) for section in sections][:len(pairs)]
    return seconds, outputs, result.returncode, result.stderr[-2000:]


def block_rows(pairs, seconds, outputs, status) -> list[dict]:
    rows = []
    for i, (description, command) in enumerate(pairs):
        row = {"command": command.splitlines()[0][:100], "description": description,
               "stated_s": stated_seconds(description), "seconds": seconds[i] if i < len(seconds) else None,
               "output": outputs[i] if i < len(outputs) else None, "block_exit_status": status}
        rows.append(row)
        print(f"{row['seconds']!s:>7} s  (README: {row['stated_s']!s:>6})  {row['command']}", flush=True)
    return rows


def walk(readme: Path, only: list[str], skip: list[str], cap: str | None, timeout: float,
         install: bool = False) -> list[dict]:
    """Run README's blocks (see the module docstring); with `install`, first its install block in a fresh clone,
    whose .venv then runs every other block, in that clone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "VIRTUAL_ENV"))}
    env.update(HF_HUB_OFFLINE="1", **CAPS.get(cap, {}))
    blocks = [(language, body) for language, body in FENCE.findall(readme.read_text()) if language in ("bash", "python")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clone = None
        if install:
            clone = tmp / "clone"
            subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
            (block,) = [body for language, body in blocks if body.lstrip().startswith(INSTALL)]
            pairs = commands(block)
            seconds, outputs, status, tail = run_block(pairs, clone, env, timeout)
            rows += block_rows(pairs, seconds, outputs, status)
            if status != 0:
                print(f"the install failed (exit {status}):\n{tail}", file=sys.stderr)
                return rows
        bin_dir = clone / ".venv" / "bin" if clone else Path(sys.executable).parent
        env["PATH"] = f"{bin_dir}:{env['PATH']}"
        for k, (language, body) in enumerate(blocks):
            if body.lstrip().startswith(NOT_HERE) or (only and not any(text in body for text in only)):
                continue
            pairs = [("", body)] if language == "python" else commands(body)
            pairs = [(d, c) for d, c in pairs if not any(text in d + c for text in skip)]
            if body.strip().startswith("bash quickstart.sh"):  # the quickstart installs itself: its own fresh clone
                folder = tmp / f"quickstart{k}"
                subprocess.run(["git", "clone", "-q", str(REPO), str(folder)], check=True)
                pairs = [(d, c) for d, c in pairs if "quickstart.sh" in c]
            elif clone is not None:
                folder = clone
            else:
                folder = tmp / f"block{k}"
                folder.mkdir()
                for name in ("pretrained", "docs"):
                    (folder / name).symlink_to(REPO / name)
            if language == "python":
                started = time.perf_counter()
                result = subprocess.run([str(bin_dir / "python"), "-c", body], cwd=folder, env=env,
                                        capture_output=True, text=True, timeout=timeout)
                seconds, status, tail = [round(time.perf_counter() - started, 1)], result.returncode, result.stderr[-2000:]
                outputs = [result.stdout]
            else:
                seconds, outputs, status, tail = run_block(pairs, folder, env, timeout)
            rows += block_rows(pairs, seconds, outputs, status)
            if status != 0:
                print(f"block failed (exit {status}):\n{tail}", file=sys.stderr)
    return rows


def named_processor(cap: str | None) -> str:
    """machine_peak.processor as a command under `cap` sees it (the caps are read when torch is imported)."""
    code = "import torch, machine_peak; print(machine_peak.processor(torch.device('cpu')))"
    env = {**os.environ, **CAPS.get(cap, {}), "PYTHONPATH": str(Path(__file__).parent)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="readme_walk.py", description=__doc__.split("\n")[0])
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--only", action="append", default=[], help="run only blocks holding this text (repeat)")
    parser.add_argument("--skip", action="append", default=[], help="leave out commands holding this text (repeat)")
    parser.add_argument("--cap", choices=sorted(CAPS), default=None, help="limit the CPU's instructions (emulation)")
    parser.add_argument("--install", action="store_true",
                        help="first run README's install block in a fresh clone, and every block with its .venv there")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds a block may run")
    parser.add_argument("--json", type=Path, default=None, help="write the rows and the processor here")
    args = parser.parse_args(argv)
    rows = walk(args.readme, args.only, args.skip, args.cap, args.timeout, args.install)
    report = {"processor": named_processor(args.cap), "cap": args.cap, "install": args.install, "load_average": os.getloadavg(),
              "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows}
    print(f"{report['processor']}; cap {args.cap}; load average now {report['load_average'][0]:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 1 if any(row["block_exit_status"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
