# Evaluation of the best (PGD-10 validation) checkpoint of each run with each suite of its setting,
# and the loss landscapes of the settings with `landscape: true` (Figure 1).


rule suite_file:
    """Write one evaluation suite as YAML for trades-eval --suites (params: a suite change reruns its evaluations only)."""
    output:
        f"{R}/suites/{{suite}}.yaml",
    params:
        text=lambda w: PC.suite_yaml(w.suite),
    log:
        "logs/suite_file/{suite}.log",
    benchmark:
        "benchmarks/suite_file/{suite}.tsv"
    localrule: True
    shell:
        "printf '%s' {params.text:q} > {output}.tmp && mv {output}.tmp {output} && echo wrote {output} > {log}"


rule evaluate:
    """Clean / PGD-10 (+FOSC, SGCS) / Square / AutoAttack of one run's best checkpoint with one suite."""
    input:
        ckpt=f"{R}/runs/{{setting}}/seed{{seed}}/checkpoints/best.pt",
        run=f"{R}/runs/{{setting}}/seed{{seed}}/run.json",
        suites=f"{R}/suites/{{suite}}.yaml",
    output:
        f"{R}/runs/{{setting}}/seed{{seed}}/eval_{{suite}}.json",
    log:
        "logs/evaluate/{setting}/seed{seed}/{suite}.log",
    benchmark:
        "benchmarks/evaluate/{setting}/seed{seed}/{suite}.tsv"
    threads: stage_resource("evaluate", "threads")
    resources:
        gpu=stage_resource("evaluate", "gpu"),
        mem_mb=stage_resource("evaluate", "mem_mb"),
        runtime=lambda w, attempt: PC.eval_runtime_min(w.setting, w.suite) * attempt,
    conda:
        ENV
    shell:
        "export PYTHONPATH={SRC:q}${{PYTHONPATH:+:$PYTHONPATH}} OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}; "
        "python -m trades_instability eval --checkpoint {input.ckpt} --suite {wildcards.suite} "
        "--suites {input.suites} --data-root {DATA_ROOT:q} --out {output} > {log} 2>&1"


rule landscape:
    """Data loss landscape around test image(s) of one run's best checkpoint (Figure 1)."""
    input:
        ckpt=f"{R}/runs/{{setting}}/seed{{seed}}/checkpoints/best.pt",
        run=f"{R}/runs/{{setting}}/seed{{seed}}/run.json",
        suites=f"{R}/suites/{LANDSCAPE_SUITE}.yaml",
    output:
        npz=f"{R}/runs/{{setting}}/seed{{seed}}/landscape.npz",
        json=f"{R}/runs/{{setting}}/seed{{seed}}/landscape.json",
    params:
        suite=LANDSCAPE_SUITE,
    log:
        "logs/landscape/{setting}/seed{seed}.log",
    benchmark:
        "benchmarks/landscape/{setting}/seed{seed}.tsv"
    threads: stage_resource("landscape", "threads")
    resources:
        gpu=stage_resource("landscape", "gpu"),
        mem_mb=stage_resource("landscape", "mem_mb"),
        runtime=lambda w, attempt: stage_resource("landscape", "minutes") * attempt,
    conda:
        ENV
    shell:
        "export PYTHONPATH={SRC:q}${{PYTHONPATH:+:$PYTHONPATH}} OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}; "
        "python -m trades_instability eval --checkpoint {input.ckpt} --suite {params.suite} "
        "--suites {input.suites} --data-root {DATA_ROOT:q} --out {output.json} "
        "--landscape-out {output.npz} > {log} 2>&1"
