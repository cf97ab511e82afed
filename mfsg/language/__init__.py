"""Language policies with PAG (model §5; LLM4MAC Eqs. 7–11).

prompts (SIE rendering) → grammar (PAG candidates, parse/format, token trie) → tokenizer
(protocol vocabulary) → backbones (tiny T5 / GPT-2 or a local checkpoint) → scoring (the
CandidateScorer interface: candidate log-probabilities, prompt encoded once; engines fastlm and
npengine share the packed layout of packing) → policy (one player's language policy and critic)
with fusion (Eq. 11) as an option; versions keys caches on parameter updates; pretrain builds the
default starting checkpoint. The players PPO trains are :mod:`mfsg.learn.language_players`.
Modules are imported on use (``from mfsg.language.policy import LanguagePolicy``) to keep
``import mfsg.language`` free of the transformers import cost.
"""
