#!/usr/bin/env python3
"""Compile the Swift snippets of the documentation.

Every ```swift fenced block in README.md and in the articles of the
documentation catalogs (Sources/*/*.docc/**/*.md) is compiled, in Swift 6
language mode, as the main.swift of an executable target of its own, in a
scratch package at .build/snippets/ that depends on this package's products
Aio, AioGIO, AioMainExecutor, AioMetrics, AioServiceLifecycle and CGLibShim
(with the traits that enable them) and on swift-log, swift-metrics and
swift-service-lifecycle. A block must therefore be a
complete program (top-level code, `try` and `await` included), unless an HTML
comment on the line(s) just before its fence (blank lines allowed between)
says otherwise:

    <!-- snippet: skip -->          not compiled (a Package.swift excerpt, ...)

    <!-- snippet: prelude
    import Aio
    let ctx = try AioContext(name: "io")
    -->                             these lines are put before the block

Usage:
    scripts/check-snippets.py [--list] [FILE ...]

    --list   print the snippets found (file, line of the fence, marker) and
             build nothing
    FILE     restrict to these Markdown files (default: README.md and every
             article of every .docc catalog)

Exit status: 0 when every compiled snippet builds (or with --list), 1 when
one fails to build, 2 on a usage or set-up error.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRATCH = os.path.join(ROOT, ".build", "snippets")

# A fence opens with three or more backticks (or tildes) and an info string;
# the block ends at a line of at least as many of the same character.
FENCE_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
MARKER_ONE_LINE = re.compile(r"^\s*<!--\s*snippet:\s*(?P<body>.*?)\s*-->\s*$")
MARKER_OPEN = re.compile(r"^\s*<!--\s*snippet:\s*(?P<kind>prelude)\s*$")
MARKER_CLOSE = re.compile(r"^\s*-->\s*$")


@dataclass
class Snippet:
    path: str          # relative to ROOT
    line: int          # 1-based line of the opening fence
    code: list = field(default_factory=list)
    marker: str = "none"                       # none | skip | prelude
    prelude: list = field(default_factory=list)
    prelude_line: int = 0                      # 1-based line of the marker
    index: int = 0                             # 1-based, per file
    target: str = ""

    @property
    def source(self):
        return "\n".join(self.prelude + self.code) + "\n"


class SnippetError(Exception):
    pass


def find_markdown_files():
    files = []
    readme = os.path.join(ROOT, "README.md")
    if os.path.exists(readme):
        files.append(readme)
    sources = os.path.join(ROOT, "Sources")
    if os.path.isdir(sources):
        for module in sorted(os.listdir(sources)):
            module_dir = os.path.join(sources, module)
            if not os.path.isdir(module_dir):
                continue
            for entry in sorted(os.listdir(module_dir)):
                if not entry.endswith(".docc"):
                    continue
                for dirpath, dirnames, filenames in os.walk(os.path.join(module_dir, entry)):
                    dirnames.sort()
                    for name in sorted(filenames):
                        if name.endswith(".md"):
                            files.append(os.path.join(dirpath, name))
    return files


def marker_before(lines, fence_index, path):
    """The marker in the HTML comment that ends just before the fence, if any.

    Returns (kind, prelude lines, 1-based line of the comment's start)."""
    i = fence_index - 1
    while i >= 0 and lines[i].strip() == "":
        i -= 1
    if i < 0:
        return "none", [], 0
    one = MARKER_ONE_LINE.match(lines[i])
    if one:
        body = one.group("body")
        if body == "skip" or body.startswith("skip "):
            return "skip", [], i + 1
        raise SnippetError(f"{path}:{i + 1}: unknown snippet marker '<!-- snippet: {body} -->' "
                           "(expected 'skip', or a multi-line 'prelude')")
    if not MARKER_CLOSE.match(lines[i]):
        return "none", [], 0
    # A multi-line comment ends here: find where it opens.
    j = i - 1
    while j >= 0 and "<!--" not in lines[j]:
        j -= 1
    if j < 0:
        return "none", [], 0
    opening = MARKER_OPEN.match(lines[j])
    if not opening:
        if re.match(r"^\s*<!--\s*snippet:", lines[j]):
            raise SnippetError(f"{path}:{j + 1}: malformed snippet marker (a prelude opens with "
                               "'<!-- snippet: prelude' alone on its line)")
        return "none", [], 0
    return "prelude", lines[j + 1:i], j + 1


def parse(path):
    rel = os.path.relpath(path, ROOT)
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    snippets = []
    i = 0
    while i < len(lines):
        match = FENCE_OPEN.match(lines[i])
        if not match:
            i += 1
            continue
        fence = match.group("fence")
        indent = len(match.group("indent"))
        info = match.group("info").strip()
        language = info.split()[0] if info else ""
        close = re.compile(r"^ {0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        if language == "swift":
            kind, prelude, prelude_line = marker_before(lines, i, rel)
            body = [line[indent:] if line[:indent].strip() == "" else line for line in lines[i + 1:j]]
            snippets.append(Snippet(path=rel, line=i + 1, code=body, marker=kind,
                                    prelude=prelude, prelude_line=prelude_line))
        i = j + 1
    for n, snippet in enumerate(snippets, start=1):
        snippet.index = n
        stem = os.path.splitext(os.path.basename(rel))[0]
        snippet.target = re.sub(r"[^A-Za-z0-9_]", "_", stem) + f"_{n}"
    return snippets


PACKAGE_TEMPLATE = """// swift-tools-version:6.1
// Generated by scripts/check-snippets.py: one executable target per snippet
// of the documentation. Do not edit; it is rewritten on every run.
import PackageDescription

let dependencies: [Target.Dependency] = [
    .product(name: "Aio", package: "swift-aio"),
    .product(name: "AioGIO", package: "swift-aio"),
    .product(name: "AioMainExecutor", package: "swift-aio"),
    .product(name: "AioMetrics", package: "swift-aio"),
    .product(name: "AioServiceLifecycle", package: "swift-aio"),
    .product(name: "CGLibShim", package: "swift-aio"),
    .product(name: "Logging", package: "swift-log"),
    .product(name: "Metrics", package: "swift-metrics"),
    .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
]

let package = Package(
    name: "snippets",
    dependencies: [
        .package(name: "swift-aio", path: {root}, traits: ["Metrics", "ServiceLifecycle"]),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
    ],
    targets: [
{targets}
    ]
)
"""


def swift_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_package(snippets):
    """(Re)writes the scratch package; keeps its .build so builds are incremental."""
    os.makedirs(SCRATCH, exist_ok=True)
    sources = os.path.join(SCRATCH, "Sources")
    if os.path.isdir(sources):
        shutil.rmtree(sources)
    targets = []
    for snippet in snippets:
        directory = os.path.join(sources, snippet.target)
        os.makedirs(directory)
        with open(os.path.join(directory, "main.swift"), "w", encoding="utf-8") as f:
            f.write(snippet.source)
        targets.append(f'        .executableTarget(name: "{snippet.target}", dependencies: dependencies, '
                       f'path: "Sources/{snippet.target}"),')
    manifest = PACKAGE_TEMPLATE.replace("{root}", swift_string(ROOT)).replace("{targets}", "\n".join(targets))
    with open(os.path.join(SCRATCH, "Package.swift"), "w", encoding="utf-8") as f:
        f.write(manifest)


DIAGNOSTIC = re.compile(r"^(?P<file>/[^:]*?/Sources/(?P<target>[A-Za-z0-9_]+)/main\.swift):(?P<line>\d+):(?P<col>\d+): "
                        r"(?P<kind>error|warning|note): (?P<message>.*)$")


def report(snippets, output):
    """Maps the compiler's diagnostics back to the Markdown files. Returns the failed targets."""
    by_target = {s.target: s for s in snippets}
    failed = {}
    seen = set()
    lines = output.split("\n")
    for k, line in enumerate(lines):
        match = DIAGNOSTIC.match(line)
        if not match or match.group("target") not in by_target:
            continue
        snippet = by_target[match.group("target")]
        if match.group("kind") != "error" and snippet.target not in failed:
            continue
        number = int(match.group("line"))
        if number <= len(snippet.prelude):
            where = f"{snippet.path}:{snippet.prelude_line + number} (in the prelude)"
        else:
            where = f"{snippet.path}:{snippet.line + number - len(snippet.prelude)}"
        context = []
        for extra in lines[k + 1:k + 4]:  # the compiler's source excerpt, if any
            if DIAGNOSTIC.match(extra) or extra.startswith("["):
                break
            context.append(extra)
        key = (snippet.target, number, match.group("col"), match.group("message"))
        if key in seen:  # the compiler repeats each diagnostic in its summary
            continue
        seen.add(key)
        failed.setdefault(snippet.target, []).append(
            f"  {where}:{match.group('col')}: {match.group('kind')}: {match.group('message')}"
            + ("".join("\n    " + c for c in context if c.strip()) if context else ""))
    return failed


def main():
    parser = argparse.ArgumentParser(description="Compile the Swift snippets of the documentation.")
    parser.add_argument("--list", action="store_true", help="only list the snippets found")
    parser.add_argument("files", nargs="*", help="Markdown files to check (default: all)")
    args = parser.parse_args()

    if args.files:
        files = []
        for name in args.files:
            path = os.path.abspath(name)
            if not os.path.isfile(path):
                print(f"check-snippets: no such file: {name}", file=sys.stderr)
                return 2
            files.append(path)
    else:
        files = find_markdown_files()

    snippets = []
    try:
        for path in files:
            snippets.extend(parse(path))
    except SnippetError as error:
        print(f"check-snippets: {error}", file=sys.stderr)
        return 2

    if args.list:
        for s in snippets:
            marker = s.marker if s.marker != "prelude" else f"prelude ({len(s.prelude)} lines)"
            print(f"{s.path}:{s.line}\t{s.target}\t{marker}")
        return 0

    compiled = [s for s in snippets if s.marker != "skip"]
    skipped = len(snippets) - len(compiled)
    if not compiled:
        print(f"check-snippets: no snippet to compile ({skipped} skipped)")
        return 0
    write_package(compiled)
    print(f"check-snippets: building {len(compiled)} snippet(s) in {os.path.relpath(SCRATCH, ROOT)} "
          f"({skipped} skipped)", flush=True)
    command = ["swift", "build", "--package-path", SCRATCH]
    # The build stops at the first target that fails; build again without the
    # failed ones until the rest builds, so that every failure is reported.
    failed = {}
    remaining = compiled
    while True:
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode == 0:
            break
        new = report(remaining, result.stdout)
        if not new:
            # Not a snippet's fault (the package itself, the toolchain): show everything.
            print(result.stdout)
            print("check-snippets: the build failed outside the snippets", file=sys.stderr)
            return 1
        failed.update(new)
        remaining = [s for s in remaining if s.target not in failed]
        if not remaining:
            break
        write_package(remaining)
    if not failed:
        print(f"check-snippets: all {len(compiled)} snippet(s) build")
        return 0
    for s in compiled:
        if s.target in failed:
            print(f"FAIL {s.path}:{s.line} ({s.target}, {s.marker})")
            for message in failed[s.target]:
                print(message)
    print(f"check-snippets: {len(failed)} of {len(compiled)} snippet(s) failed to build")
    return 1


if __name__ == "__main__":
    sys.exit(main())
