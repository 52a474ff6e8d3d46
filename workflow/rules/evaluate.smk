# Evaluation of the best (PGD-10 validation) and the last-epoch checkpoint of each run with each suite of its setting
# (one JSON: best at the top level, last under "last"),
# and the loss landscapes of the settings with `landscape: true` (Figure 1).


rule suite_file:
    """Write one evaluation suite as YAML for trades-eval --suites (params: a suite change reruns its evaluations only)."""
    output:
        W.results_file("suites", "{suite}.yaml"),
    log:
        "logs/suite_file/{suite}.log",
    benchmark:
        "benchmarks/suite_file/{suite}.tsv"
    localrule: True
    conda:
        ENV
    params:
        text=lambda w: PC.suite_yaml(w.suite),
    shell:
        "printf '%s' {params.text:q} > {output}.tmp && mv {output}.tmp {output} && echo wrote {output} > {log}"


rule evaluate:
    """Clean / PGD-10 (+FOSC, SGCS) / Square / AutoAttack of one run's best and last checkpoints with one suite."""
    input:
        unpack(W.data_input),
        ckpt=W.run_file("checkpoints/best.pt"),
        last=W.run_file("checkpoints/last.pt"),
        run=W.run_file("run.json"),
        suites=W.results_file("suites", "{suite}.yaml"),
    output:
        W.run_file("eval_{suite}.json"),
    log:
        "logs/evaluate/{setting}/seed{seed}/{suite}.log",
    benchmark:
        "benchmarks/evaluate/{setting}/seed{seed}/{suite}.tsv"
    conda:
        ENV
    threads: W.resource("evaluate", "threads")
    resources:
        gpu=W.resource("evaluate", "gpu"),
        mem_mb=W.resource("evaluate", "mem_mb"),
        runtime=lambda w, attempt: PC.eval_runtime_min(w.setting, w.suite) * attempt,
    shell:
        JOB_ENV
        # the job's own GPU on one machine (trades_instability.workflow.gpu_slots); unchanged under SLURM
        + "python -m trades_instability gpu-slot {resources.gpu} -- "
        "python -m trades_instability eval --checkpoint {input.ckpt} --last-checkpoint {input.last} "
        '--suite {wildcards.suite} --suites {input.suites} --data-root "$TRADES_DATA_ROOT" --out {output} > {log} 2>&1'


rule landscape:
    """Data loss landscape around test image(s) of one run's best checkpoint (Figure 1)."""
    input:
        unpack(W.data_input),
        ckpt=W.run_file("checkpoints/best.pt"),
        run=W.run_file("run.json"),
        suites=W.results_file("suites", f"{LANDSCAPE_SUITE}.yaml"),
    output:
        npz=W.run_file("landscape.npz"),
        json=W.run_file("landscape.json"),
    log:
        "logs/landscape/{setting}/seed{seed}.log",
    benchmark:
        "benchmarks/landscape/{setting}/seed{seed}.tsv"
    conda:
        ENV
    threads: W.resource("landscape", "threads")
    resources:
        gpu=W.resource("landscape", "gpu"),
        mem_mb=W.resource("landscape", "mem_mb"),
        runtime=lambda w, attempt: W.resource("landscape", "minutes") * attempt,
    params:
        suite=LANDSCAPE_SUITE,
    shell:
        JOB_ENV + "python -m trades_instability gpu-slot {resources.gpu} -- "
        "python -m trades_instability eval --checkpoint {input.ckpt} --suite {params.suite} "
        '--suites {input.suites} --data-root "$TRADES_DATA_ROOT" --out {output.json} '
        "--landscape-out {output.npz} > {log} 2>&1"
