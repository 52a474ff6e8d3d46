# Training: one job per run (setting x seed).
#
# Layout of a run directory results/runs/{setting}/seed{seed}/ :
#   config.yaml            resolved run config            (rule run_config; input of train)
#   state/                 the trainer's own output folder (trades-train --out): checkpoints/last.pt
#                          (resume state), checkpoints/best.pt, epochs.csv, batches.csv, run.json,
#                          run_config.yaml (the config it was started with)
#   train.log              the messages of every attempt (appended by each step itself; {log} holds the
#                          last attempt's whole output, tracebacks included)
#   run.json, epochs.csv, batches.csv, checkpoints/best.pt, checkpoints/last.pt (final epoch)
#                          the DECLARED outputs: hard links (or copies) of the files in state/, made
#                          only after the trainer finished (python -m trades_instability pipeline publish)
#
# Why state/ is not an output: Snakemake deletes the declared outputs of a job before it (re)runs it
# (Job.prepare -> remove_existing_output, for incomplete jobs too), and on failure. The resume state
# must survive an interrupted job (SIGTERM at a SLURM time limit, preemption, kill -9), so nothing
# under state/ is ever declared: a rerun of the same job finds state/checkpoints/last.pt and resumes.
# A changed run config moves state/ aside (state.stale-<time>/) and starts over.


rule run_config:
    """Write the resolved run config of one run (params: a config change reruns exactly its runs)."""
    output:
        W.run_file("config.yaml"),
    log:
        "logs/run_config/{setting}/seed{seed}.log",
    benchmark:
        "benchmarks/run_config/{setting}/seed{seed}.tsv"
    localrule: True
    conda:
        ENV
    params:
        # the whole run config except data_root, as deterministic YAML: the rerun trigger. data_root is
        # appended from $TRADES_DATA_ROOT_YAML (not a param: moving the data is not a new experiment)
        text=lambda w: PC.run_config_yaml(w.setting, w.seed, with_data_root=False),
    shell:
        # a shell one-liner, not a run: block: local run: jobs are executed by a new snakemake process
        # that parses the whole workflow again (seconds per job, 219 jobs)
        "( printf '%s' {params.text:q}; printf 'data_root: %s\\n' \"$TRADES_DATA_ROOT_YAML\" ) > {output}.tmp "
        "&& mv {output}.tmp {output} && echo wrote {output} > {log}"


rule train:
    """Train one run with TRADES (or its variants); resumes from state/checkpoints/last.pt."""
    input:
        unpack(W.data_input),
        config=W.run_file("config.yaml"),
    output:
        run=W.run_file("run.json"),
        epochs=W.run_file("epochs.csv"),
        batches=W.run_file("batches.csv"),
        best=W.run_file("checkpoints/best.pt"),
        last=W.run_file("checkpoints/last.pt"),
    log:
        "logs/train/{setting}/seed{seed}.log",
    benchmark:
        "benchmarks/train/{setting}/seed{seed}.tsv"
    conda:
        ENV
    threads: W.resource("train", "threads")
    resources:
        gpu=W.resource("train", "gpu"),
        mem_mb=W.resource("train", "mem_mb"),
        # a retry (time limit, preemption) gets a longer limit; training resumes from state/ anyway
        runtime=lambda w, attempt: PC.train_runtime_min(w.setting) * attempt,
    params:
        run_dir=lambda w: W.run_dir(w.setting, w.seed),
        state=lambda w: W.run_state_dir(w.setting, w.seed),
    shell:
        JOB_ENV
        # no `| tee`: on scancel tee dies first and the trainer's clean-stop line is lost; each step
        # appends to train.log itself (--log-file) and the shell writes {log} directly
        + "L={params.run_dir}/train.log; "
        "( python -m trades_instability pipeline prepare-state --config {input.config} --state {params.state} "
        '--log-file "$L" '
        "&& python -m trades_instability gpu-slot {resources.gpu} -- "
        "python -m trades_instability train --config {input.config} --out {params.state} --on-diverge record "
        '--no-progress --log-file "$L" '
        "&& python -m trades_instability pipeline publish --state {params.state} --run-dir {params.run_dir} "
        '--log-file "$L" '
        ") > {log} 2>&1"
