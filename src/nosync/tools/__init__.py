"""Commands built on runs: ``compare`` (a grid of runs and its table), ``simulate`` (a swarm of
many particles as threads of one process) and ``report`` (plots and Markdown from run files)."""
