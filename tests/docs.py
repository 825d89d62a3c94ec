#!/usr/bin/env python3
"""Runs the examples of README.md and docs/*.md that show their output, and fails where the output
differs. Such an example is a fenced block tagged `psql`: each statement follows a `=# ` prompt
(continued after `-# `), and the lines up to the next prompt are what psql prints for it (none:
not compared). Each document runs in a fresh database holding tests/docs/fixture.sql, its
blocks in order, in one psql session. Connects as psql does (PGHOST, PGPORT, PGUSER)."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATABASE = "org_stats_docs"


def examples(path):
    """(statement, expected output or None, line) of every `psql` block of `path`, in order."""
    found, statement, expected, line_no, in_block = [], None, [], 0, False

    def close():
        if statement is not None:
            text = "\n".join(expected).strip("\n")
            found.append(("\n".join(statement), text or None, line_no))

    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not in_block:
            in_block = line.strip() == "```psql"
            continue
        if line.strip() == "```":
            close()
            statement, expected, in_block = None, [], False
        elif line.startswith("=# "):
            close()
            statement, expected, line_no = [line[3:]], [], number
        elif line.startswith("-# ") and statement is not None and not expected:
            statement.append(line[3:])
        elif statement is not None:
            expected.append(line.rstrip())
    return found


def psql(*args, stdin=None):
    return subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *args],
        input=stdin, capture_output=True, text=True, check=False,
    )


def run(path, statements):
    """What psql prints for each statement, in a fresh database with the fixture."""
    for sql in (f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)", f"CREATE DATABASE {DATABASE}"):
        done = psql("-d", "postgres", "-c", sql)
        if done.returncode:
            sys.exit(f"docs: {sql}: {done.stderr}")
    script = [f"\\i {ROOT / 'tests/docs/fixture.sql'}", "\\pset pager off"]
    for i, (statement, _, _) in enumerate(statements):
        script += [f"\\echo @@{i}", statement]
    script.append(f"\\echo @@{len(statements)}")
    done = psql("-d", DATABASE, stdin="\n".join(script) + "\n")
    if done.returncode:
        sys.exit(f"docs: {path.relative_to(ROOT)}: psql failed:\n{done.stderr}")
    chunks = re.split(r"(?m)^@@\d+\n", done.stdout)[1:]
    return ["\n".join(l.rstrip() for l in chunk.splitlines()).strip("\n") for chunk in chunks]


def main():
    documents = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
    failed, compared = 0, 0
    for path in documents:
        statements = examples(path)
        if not statements:
            continue
        outputs = run(path, statements)
        for (statement, expected, line), output in zip(statements, outputs):
            if expected is None:
                continue
            compared += 1
            if output != expected:
                failed += 1
                print(f"{path.relative_to(ROOT)}:{line}: {statement}\n--- shown\n{expected}\n--- printed\n{output}\n")
    psql("-d", "postgres", "-c", f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    if failed:
        sys.exit(f"docs: {failed} of {compared} examples print something else than they show")
    print(f"docs: {compared} examples print what they show")


main()
