"""``ray job submit`` entrypoint of every stage: catalog, generate, train, infer, report.

    RAY_AUTH_MODE=token ray job submit --working-dir . --runtime-env deploy/runtime_env.yaml -- \
        python jobs/pipeline.py --config paper --out /abs/shared/path/cmpipe --workers 8

``--out`` must be an absolute path every node sees (the job runs inside the unpacked working
directory). ``--stages generate,train`` runs a subset; a rerun resumes every stage. The driver
finds the cluster through ``RAY_ADDRESS``, set by Ray (or ``--address``).
"""

import sys

from cmpipe.cli import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", *sys.argv[1:]]))
