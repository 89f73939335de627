"""``ray job submit`` entrypoint of ``cmpipe infer``: Ray Data actors sample the test split on the job's cluster.

    RAY_AUTH_MODE=token ray job submit --working-dir . -- \
        python jobs/infer.py --config paper --store /abs/path/images.zarr --checkpoint /abs/path/run \
        --out /abs/path/results --set infer.actors=8

Use absolute paths every node sees: the actors read the store and write ``posterior.zarr`` and
``tables/`` under ``--out``. A rerun skips the images done. The driver finds the cluster through
``RAY_ADDRESS``, set by Ray.
"""

import sys

from cmpipe.cli import main

if __name__ == "__main__":
    sys.exit(main(["infer", *sys.argv[1:]]))
