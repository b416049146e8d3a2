// How the full-text index is built (by the worker's index upkeep) and queried (by search): the
// tokenizer chosen for the languages spaces are written in. One place for writer and reader.
