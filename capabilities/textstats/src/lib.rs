//! The textstats capability: statistics, word frequencies and digests of a text.
