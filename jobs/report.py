"""``ray job submit`` entrypoint of ``cmpipe report``: figures and Table 1 from the results tables.

    RAY_AUTH_MODE=token ray job submit --working-dir . -- \
        python jobs/report.py --results /abs/path/results

No model and no Ray work: it reads ``tables/``, ``images.parquet`` and ``posterior.zarr``
under ``--results`` and writes ``report/`` there (or to ``--out``).
"""

import sys

from cmpipe.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
