"""mfsg: a theory-and-verification toolkit for learned uplink MAC protocols as a dynamic
multi-follower Stackelberg game.

The model is stated in the book chapter "The model" (``book/model.md``); docstrings cite its
sections as "model §n": §1 scenario and parameters, §2 one TTI (§2.1–§2.8 its steps), §3 churn
and packet conservation, §4 utilities, §5 language policies (SIE prompts, PAG, the policy),
§6 Stackelberg PPO and baselines, §7 metrics, §8 the game and its equilibria.
"""

__version__ = "0.1.0"
