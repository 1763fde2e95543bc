"""Model access for the generators (#19): any OpenAI-compatible chat-completions
endpoint, with tool calling and streaming.

``client`` (:class:`ModelClient`, :func:`model_config`: the settings, a 409 when none
is set), ``tokens`` (streamed text as batched ``token`` job events), ``prompts``
(versioned prompt files in ``prompts/``). See docs/generation.md.
"""
