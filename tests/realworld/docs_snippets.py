#!/usr/bin/env python3
"""Runs the snippets of the README and docs/ that need more than the binary, as a reader would:

- `yaml prometheus` blocks through `promtool check config` (with the shipped rule files beside
  them), `yaml alertmanager` through `amtool check-config`, `yaml rules` through
  `promtool check rules`, `yaml slos` rendered by alerts/slo.py and checked by `promtool`;
- `sh` blocks, in order, from the repository's root with the built binary first on PATH (and
  standing for `cargo run --release --`, which would only build it again): a block
  that starts the exporter is left running until the page's next such block (or its end), the
  others run against it and must exit 0. The README's exporter must show `exporter-self` healthy
  within 15 s, in the API and on the status page in Chromium (tests/browser/readme_walkthrough.mjs;
  SCREENSHOT=path saves the README's picture); the fleet example must list its DNS-discovered
  workers. `cargo test` is .ci/run's own step and is only checked to be there.

Exporter configs are tests/docs_snippets.rs's (cargo test). Blocks marked `excerpt` (a fragment),
`manual` (a command that needs Docker, a cluster or the reader's hosts), `output` or `diagram`
are skipped by name, and counted. Needs Debian's prometheus, prometheus-alertmanager, chromium,
dnsmasq, python3-yaml and Node.js, as .ci/run installs them.
Usage: tests/realworld/docs_snippets.py path/to/agent-health-exporter   (about a minute)
"""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
FILES = ["README.md", "dashboards/README.md", "deploy/kubernetes/README.md"] + sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")
)
SKIP_WORDS = {"excerpt", "manual", "output", "diagram"}
failures = []


def say(ok, what):
    print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        failures.append(what)


def blocks(name):
    """(line, info words, text) of every fenced block, indentation of the fence removed."""
    found, current = [], None
    for n, line in enumerate((ROOT / name).read_text().split("\n"), 1):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if current is None and stripped.startswith("```"):
            current = (n, indent, stripped[3:].split(), [])
        elif current is not None and stripped == "```":
            found.append((current[0], current[2], "\n".join(current[3]) + "\n"))
            current = None
        elif current is not None:
            cut = min(current[1], len(line) - len(line.lstrip(" ")))
            current[3].append(line[cut:])
    return found


def run_tool(cmd, what):
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    say(out.returncode == 0, what + ("" if out.returncode == 0 else f":\n{out.stdout}{out.stderr}"))


def check_prometheus(text, place):
    with tempfile.TemporaryDirectory() as work:
        rules = pathlib.Path(work, "rules")
        rules.mkdir()
        for name in ("agent-health.rules.yml", "agent-slo.rules.yml"):
            shutil.copy(ROOT / "alerts" / name, rules / name)
        path = pathlib.Path(work, "prometheus.yml")
        path.write_text(text)
        run_tool(["promtool", "check", "config", str(path)], f"{place}: promtool check config")


def check_file(cmd, text, place, name):
    with tempfile.TemporaryDirectory() as work:
        path = pathlib.Path(work, name)
        path.write_text(text)
        run_tool([*cmd, str(path)], f"{place}: {' '.join(cmd)}")


def check_slos(text, place):
    sys.dont_write_bytecode = True  # no __pycache__ left in alerts/
    sys.path.insert(0, str(ROOT / "alerts"))
    import yaml  # noqa: PLC0415 (Debian's python3-yaml, as alerts/generate.py needs)
    import slo  # noqa: PLC0415

    try:
        rules = slo.rules_text(slo.slos(yaml.safe_load(text)))
    except slo.SloError as error:
        say(False, f"{place}: alerts/slo.py refuses the objectives: {error}")
        return
    check_file(["promtool", "check", "rules"], rules, place + " (rendered by alerts/slo.py)", "slo.rules.yml")


def get(url):
    with urllib.request.urlopen(url, timeout=2) as answer:
        return answer.read().decode()


def wait(what, condition, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if condition():
                return True
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.25)
    say(False, f"{what} (waited {seconds} s)")
    return False


def agents():
    return {a["name"]: a for a in json.loads(get(BASE + "/api/v1/agents"))["agents"]}


def browser_walkthrough():
    """The README's status page in Chromium; the screenshot when SCREENSHOT names a path."""
    browser = ROOT / "tests" / "browser"
    if not (browser / "node_modules" / "playwright-core").is_dir():
        subprocess.run(
            ["npm", "install", "--no-package-lock", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=browser, check=True, timeout=300,
        )
    cmd = ["node", str(browser / "readme_walkthrough.mjs"), f"base={BASE}"]
    if os.environ.get("SCREENSHOT"):
        cmd.append(f"screenshot={pathlib.Path(os.environ['SCREENSHOT']).resolve()}")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    print(out.stdout.rstrip(), out.stderr.rstrip(), sep="\n" if out.stderr else "", flush=True)
    say(out.returncode == 0, "the README's status page in Chromium")


# What must hold once a block that starts the exporter has it ready, by the block's command.
def expect_readme():
    started = time.monotonic()
    if wait("README: exporter-self healthy within 15 s of ready",
            lambda: agents()["exporter-self"]["status"] == "healthy", 15):
        say(True, f"README: exporter-self healthy {time.monotonic() - started:.1f} s after ready")
    browser_walkthrough()


def expect_fleet():
    if wait("examples/fleet/run.sh: workers from DNS (dnsmasq) and from HTTP SD are in the fleet",
            lambda: any(a.get("origin", "").startswith("dns_sd/") for a in agents().values())
            and any(a.get("origin", "").startswith("http_sd/") for a in agents().values()), 60):
        say(True, "examples/fleet/run.sh: workers from DNS (dnsmasq) and from HTTP SD are in the fleet")


def expect_own_fleet():
    if wait("README: the exporter on fleet.yaml lists planner, ledger and nightly-export",
            lambda: set(agents()) == {"planner", "ledger", "nightly-export"}, 10):
        say(True, "README: the exporter on fleet.yaml lists planner, ledger and nightly-export")


EXPECT = [
    ("cargo run --release -- --config.file=config.example.yaml", expect_readme),
    ("agent-health-exporter --config.file=fleet.yaml\n", expect_own_fleet),
    ("examples/fleet/run.sh", expect_fleet),
]
BASE = "http://127.0.0.1:10056"


def starts_exporter(text):
    return any(command in text for command, _ in EXPECT)


def stop(proc):
    if proc and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_commands(name, env):
    server = None
    # "Run it on your fleet": the commands that name fleet.yaml run in a folder of their own,
    # holding the page's exporter config as fleet.yaml, as a reader would have written it.
    fleet = WORK / "fleet"
    try:
        for line, info, text in blocks(name):
            if info == ["yaml"] and "fleet.yaml" in "".join(t for _, i, t in blocks(name) if i[:1] == ["sh"]):
                fleet.mkdir(exist_ok=True)
                (fleet / "fleet.yaml").write_text(text)
            if info[:1] != ["sh"] or SKIP_WORDS & set(info[1:]):
                continue
            place = f"{name}:{line}"
            cwd = fleet if ("fleet.yaml" in text or "nightly.token" in text) and fleet.is_dir() else ROOT
            if text.strip() == "cargo test":
                ci = (ROOT / ".ci" / "run").read_text()
                say(re.search(r"^(?:[A-Z_]+=\S+ )*cargo test --locked$", ci, re.M) is not None,
                    f"{place}: `cargo test` is .ci/run's own step")
                continue
            if starts_exporter(text):
                stop(server)
                # The binary given stands for cargo's build of it: the same program, no second build.
                command = text.replace("cargo run --release --", env["AHE_BINARY"])
                command = command.replace("examples/fleet/run.sh", "examples/fleet/run.sh " + env["AHE_BINARY"])
                server = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, start_new_session=True,
                                          stdout=subprocess.DEVNULL, stderr=open(WORK / "exporter.log", "a"))
                # cargo run may need to build: generous, and CI has built the release binary already.
                if not wait(f"{place}: the exporter answers /-/ready", lambda: get(BASE + "/-/ready") is not None, 300):
                    print((WORK / "exporter.log").read_text()[-3000:])
                    continue
                say(True, f"{place}: started, and /-/ready answers")
                for wanted, expect in EXPECT:
                    if wanted in text:
                        expect()
                continue
            out = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=cwd, env=env,
                                 capture_output=True, text=True, timeout=60, check=False)
            say(out.returncode == 0, f"{place}: runs" + ("" if out.returncode == 0 else f":\n{out.stdout}{out.stderr}"))
    finally:
        stop(server)


def main():
    global WORK
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    binary = pathlib.Path(sys.argv[1]).resolve()
    for tool in ("promtool", "amtool", "node", "npm"):
        if not shutil.which(tool):
            sys.exit(f"FAIL: {tool} is not installed (see .ci/run)")
    WORK = pathlib.Path(tempfile.mkdtemp(prefix="docs-snippets-"))
    env = dict(os.environ, PATH=f"{binary.parent}{os.pathsep}{os.environ['PATH']}", AHE_BINARY=str(binary))
    # The docs write the binary's name; a cargo-built one is called just that.
    if binary.name != "agent-health-exporter":
        sys.exit(f"FAIL: {binary} is not named agent-health-exporter")
    counted = {"checked": 0, "skipped": 0}
    for name in FILES:
        for line, info, text in blocks(name):
            place = f"{name}:{line}"
            words = set(info[1:])
            if words & SKIP_WORDS:
                counted["skipped"] += 1
                continue
            kind = " ".join(info)
            if kind == "yaml prometheus":
                check_prometheus(text, place)
            elif kind == "yaml alertmanager":
                check_file(["amtool", "check-config"], text, place, "alertmanager.yml")
            elif kind == "yaml rules":
                check_file(["promtool", "check", "rules"], text, place, "rules.yml")
            elif kind == "yaml slos":
                check_slos(text, place)
            else:
                continue
            counted["checked"] += 1
    for name in FILES:
        run_commands(name, env)
    print(f"{counted['checked']} tool-checked blocks, {counted['skipped']} skipped by name "
          f"(excerpt, manual, output, diagram); exporter configs are checked by cargo test --test docs_snippets")
    shutil.rmtree(WORK, ignore_errors=True)
    if failures:
        sys.exit(f"FAIL: {len(failures)} snippet checks failed")
    print("all snippets pass")


if __name__ == "__main__":
    main()
