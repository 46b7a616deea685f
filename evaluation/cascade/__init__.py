"""The cascade of A.5: the small model generates, and at each `<CALL>` a partner
(`evaluation.backends.partners`) supplies the next token. `generate.py` holds the decoding
loop and its records, `budget.py` the equal call budget of section 5.1."""
