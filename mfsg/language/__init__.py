"""Language policies with PAG (model §5; LLM4MAC Eqs. 7–11).

prompts (SIE rendering) → grammar (PAG candidates, parse/format, token trie) → tokenizer
(protocol vocabulary) → backbones (tiny T5 / GPT-2 or a local checkpoint) → scoring
(candidate log-probabilities, prompt encoded once) → policy (leader and unified follower,
critics) with fusion (Eq. 11) as an option; pretrain builds the default starting checkpoint.
Modules are imported on use (``from mfsg.language.policy import Agents``) to keep
``import mfsg.language`` free of the transformers import cost.
"""
