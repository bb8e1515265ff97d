"""Running experiments; every public name of these modules is re-exported here.

    cli          the `Experiment` contract (run → raw, analyse → metrics, report from results.json), config fields
                 (`param`, `BinaryTaskFields`), the command line, output folders, `execute`
    results      results.json: environment, code fingerprint, JSON conversion, write/read
    checkpoint   `Checkpointer` (orbax) and `resume_loop`, the one checkpoint/resume loop
    sweep        vmap over a leading axis, sharded over devices (`sweep`, `sweep_mesh`)
    keys         every random key as a function of (seed, path of names and values): `derive`, `derive_batch`
    progress     progress lines (tqdm on a terminal, periodic lines in a log)
    report       declarative tables and figures (`ReportSpec`, `Figure`, `Panel`, `Series`, `Table`) → report.md/html
Not re-exported (use them as modules): `registry` (the experiments by name) and `reproduce` (run them all);
their entry points are `python -m deeptheory.train`.
"""

from deeptheory.train.harness import checkpoint, cli, keys, progress, report, results, sweep
from deeptheory.train.harness.checkpoint import *  # noqa: F403
from deeptheory.train.harness.cli import *  # noqa: F403
from deeptheory.train.harness.keys import *  # noqa: F403
from deeptheory.train.harness.progress import format_duration  # noqa: F401  (progress is the module here)
from deeptheory.train.harness.report import *  # noqa: F403
from deeptheory.train.harness.results import *  # noqa: F403
from deeptheory.train.harness.sweep import from_host, sweep_keys, sweep_mesh, to_host  # noqa: F401  (sweep: module)

# `progress` and `sweep` name both a module and its main function: here they are the modules (the functions are
# `progress.progress` and `sweep.sweep`), so `from deeptheory.train.harness import sweep` keeps meaning the module.
MODULES = (cli, results, checkpoint, sweep, keys, progress, report)
__all__ = [name for module in MODULES for name in module.__all__ if name not in ("progress", "sweep")]
