"""Reading a protocol (rule-based or learned): transcripts of its decisions with the hidden state behind
them, what each message symbol is followed by, mutual information between messages and hidden state,
signaling cost, and a protocol card of rules with their support and accuracy (model §2, §6, §7)."""
