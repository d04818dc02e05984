"""The folders of src/ form layers: every `#include "folder/file.h"` between folders must go one
way, so no two folders depend on each other, directly or around a longer loop. This lists the
edges between folders from the sources themselves and fails naming every cycle and, for each
edge in it, a file that makes it."""
import collections, os, re, sys, unittest

ROOT = os.environ.get("Q3_ROOT", os.path.join(os.path.dirname(__file__), ".."))
SRC = os.path.join(ROOT, "src")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"/]+)/[^"]+"', re.M)


def folder_edges():
    """{(from_folder, to_folder): first file that includes across}"""
    edges = {}
    for folder in sorted(os.listdir(SRC)):
        path = os.path.join(SRC, folder)
        if not os.path.isdir(path):
            continue
        for dirpath, _, files in os.walk(path):
            for name in sorted(files):
                if not name.endswith((".c", ".h", ".cu", ".cuh")):
                    continue
                file = os.path.join(dirpath, name)
                with open(file, encoding="utf-8", errors="replace") as f:
                    for target in INCLUDE.findall(f.read()):
                        if target != folder and os.path.isdir(os.path.join(SRC, target)):
                            edges.setdefault((folder, target), os.path.relpath(file, ROOT))
    return edges


def cycles(edges):
    """Every elementary cycle's folders, each listed once (Johnson-style search from each node,
    only through nodes that sort after the start, which suffices for a few dozen folders)."""
    graph = collections.defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    found = []

    def walk(start, node, path, seen):
        for nxt in sorted(graph[node]):
            if nxt == start:
                found.append(path[:])
            elif nxt > start and nxt not in seen:
                seen.add(nxt)
                path.append(nxt)
                walk(start, nxt, path, seen)
                path.pop()
                seen.discard(nxt)

    for start in sorted(graph):
        walk(start, start, [start], {start})
    return found


class Layering(unittest.TestCase):
    def test_cycle_finder_finds_a_planted_cycle(self):
        edges = {("a", "b"): "x", ("b", "c"): "y", ("c", "a"): "z", ("c", "d"): "w"}
        self.assertEqual(cycles(edges), [["a", "b", "c"]])

    def test_no_cycles_between_src_folders(self):
        edges = folder_edges()
        self.assertTrue(edges, "no includes between folders found: is Q3_ROOT right?")
        report = []
        for cyc in cycles(edges):
            hops = zip(cyc, cyc[1:] + cyc[:1])
            report.append(" -> ".join(cyc + cyc[:1]) + ":\n" +
                          "\n".join(f"    {a} -> {b}: {edges[(a, b)]}" for a, b in hops))
        self.assertFalse(report, "include cycles between src/ folders:\n" + "\n".join(report))


if __name__ == "__main__":
    unittest.main(verbosity=2)
