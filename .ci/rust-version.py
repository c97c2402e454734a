#!/usr/bin/env python3
"""Fails when the toolchain we claim is older than what the lock needs.

Reads `cargo metadata --locked` (every locked package, dev and build dependencies included, since
`cargo test` builds them too) and compares each package's declared `rust-version` with ours in
Cargo.toml, and ours with the build stage of Dockerfile.source (the release Dockerfile copies a
prebuilt binary and has no toolchain). Prints what it found either way.
"""
import json
import re
import subprocess
import sys


def version(text):
    """`1.89` and `1.89.0` are the same version."""
    parts = [int(part) for part in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def main():
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--locked"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    ours_id = meta["workspace_members"][0]
    ours = next(p for p in meta["packages"] if p["id"] == ours_id)
    claimed = ours.get("rust_version")
    if not claimed:
        sys.exit("Cargo.toml has no rust-version: set it to what the lock needs")
    needs = [
        (version(p["rust_version"]), p["name"], p["version"], p["rust_version"])
        for p in meta["packages"]
        if p.get("rust_version") and p["id"] != ours_id
    ]
    newest = max(needs)
    print(f"rust-version {claimed}; the lock needs {newest[3]} ({newest[1]} {newest[2]})")
    too_new = [n for n in needs if n[0] > version(claimed)]
    if too_new:
        for _, name, ver, rv in sorted(too_new, reverse=True):
            print(f"  {name} {ver} declares rust-version {rv}")
        sys.exit(f"raise rust-version in Cargo.toml (and Dockerfile.source's rust image) to {newest[3]}")
    with open("Dockerfile.source", encoding="utf-8") as f:
        docker = re.search(r"^FROM rust:([0-9.]+)-", f.read(), re.M)
    if not docker or version(docker.group(1)) != version(claimed):
        found = docker.group(1) if docker else "no pinned version"
        sys.exit(f"Dockerfile.source's build stage uses rust {found}; pin rust:{claimed}-… as Cargo.toml says")
    print(f"Dockerfile.source builds with rust {docker.group(1)}")


if __name__ == "__main__":
    main()
