"""Experiment runners E1–E6 (``mfsg experiment NAME``): one config per figure or table
in ``experiments/configs/``, results and figures in ``experiments/results/<name>/``."""

EXPERIMENTS = {
    "e1": ("mfsg.experiments.e1_sweep", "throughput and Jain's index vs p_a and N (MFSG Fig. 4)"),
    "e2": ("mfsg.experiments.e2_convergence", "convergence of the normalized system utility (MFSG Fig. 5)"),
    "e3": ("mfsg.experiments.e3_generalization", "generalization: unseen N = 7, 8 and Markov churn"),
    "e4": ("mfsg.experiments.e4_decoding", "PAG vs free-form decoding vs Sym. MAPPO (LLM4MAC Fig. 5)"),
    "e5": ("mfsg.experiments.e5_ablations", "ablations: no SIE, no PAG, no pretraining, tau = 1 (LLM4MAC Fig. 3)"),
    "e6": ("mfsg.experiments.e6_equilibrium", "equilibrium verification of the trained policies (model §8)"),
}

__all__ = ["EXPERIMENTS"]
