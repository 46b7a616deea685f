"""The models evaluations talk to: text-in text-out judges (`text`), next-token cascade
partners (`partners`), and the OpenAI-compatible HTTP client both use (`endpoint`)."""
