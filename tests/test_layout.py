"""The shape of the library (docs/design.md, "Layers"): every module of ``coat/`` belongs to one layer, imports only
from its own layer or the ones below (lazy imports inside functions included), and no two modules import each
other round in a cycle; no module is over 600 lines and no function over 80; ``import coat`` and ``coat.wrap``
load no expert, no target cache and no audio source."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "coat"

# Bottom to top. A module is in the first layer with a prefix it matches (``coat.data`` covers coat.data.*).
LAYERS = [
    ("foundation", ["coat", "coat.environment", "coat.errors", "coat.files", "coat.config_io", "coat.config_help",
                    "coat.hub", "coat.progress", "coat.smoke", "coat.reports", "coat.extras",
                    "coat.distributed"]),
    ("method", ["coat.config", "coat.targets", "coat.thinking", "coat.adapters"]),
    ("heads", ["coat.heads", "coat.losses"]),
    ("model files", ["coat.model_io"]),
    ("model", ["coat.model"]),
    ("data", ["coat.data"]),
    ("experts", ["coat.experts"]),
    ("models to load", ["coat.zoo", "coat.loading"]),
    ("recipes", ["coat.training", "coat.evaluation", "coat.extraction", "coat.ablation", "coat.analysis",
                 "coat.demo", "coat.demo_report", "coat.lmms_eval_model"]),
    ("cli", ["coat.cli", "coat.__main__"]),
]
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    best, depth = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and prefix.count(".") > depth:
                best, depth = index, prefix.count(".")
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (and to docs/design.md)")
    return best


def imports_of(module: str) -> set[str]:
    """The coat modules ``module`` imports, at module level or inside functions (``from x import y`` counts as x,
    or x.y when that is a module)."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base
                                                                                                   else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found.update(n for n in names if n == "coat" or n.startswith("coat."))
    found.discard(module)
    return {n for n in found if n in MODULES}


def test_every_import_points_down_the_layers():
    upward = []
    for module in MODULES:
        for target in imports_of(module):
            if layer_of(target) > layer_of(module):
                upward.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
                              f"({LAYERS[layer_of(target)][0]})")
    assert upward == []


def test_no_import_cycle():
    graph = {m: imports_of(m) for m in MODULES}
    # a package's __init__ importing its own modules is how packages work; a module importing its package back
    # (for a name the __init__ re-exports) would close a cycle through it, so it counts
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_module_over_600_lines_and_no_function_over_80():
    long_modules = [f"{m}: {n}" for m, p in MODULES.items() if (n := len(p.read_text().splitlines()))
                    > MAX_MODULE_LINES]
    long_functions = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{module}.{node.name}: {length} lines")
    assert long_modules == [] and long_functions == []


@pytest.mark.parametrize("code", ["import coat", "import coat; coat.wrap", "import coat; coat.CoATModel",
                                  "import coat.cli"])
def test_import_coat_loads_no_expert_cache_or_audio_source(code):
    check = (f"{code}\nimport sys\nheavy = sorted(m for m in sys.modules if m.startswith(('coat.experts', "
             "'coat.data')) or m in ('datasets', 'soundfile', 'librosa', 'torchcrepe', 'speechbrain'))\n"
             "print(heavy)")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stdout


def test_the_layers_cover_every_module():
    for module in MODULES:
        layer_of(module)
