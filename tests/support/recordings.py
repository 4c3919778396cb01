"""What the real Codex CLI printed, recorded, for the tests of the parser and the transcript."""

from __future__ import annotations

# Lines recorded from Codex CLI 0.169.0 (`codex exec --json`), long strings trimmed.
RECORDED_RUN = [
    '{"type":"thread.started","thread_id":"01a20bf1-29b6-7921-bc58-13ae9b0af77b"}',
    '{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata for `fake-model` not found. Defaulting to fallback metadata; this can degrade performance and cause issues."}}',
    '{"type":"turn.started"}',
    '{"type":"item.completed","item":{"id":"item_1","type":"reasoning","text":"**Planning** I will say hi."}}',
    '{"type":"item.started","item":{"id":"item_2","type":"command_execution","command":"/bin/bash -lc \'echo hi\'","aggregated_output":"","exit_code":null,"status":"in_progress"}}',
    '{"type":"item.completed","item":{"id":"item_2","type":"command_execution","command":"/bin/bash -lc \'echo hi\'","aggregated_output":"hi\\n","exit_code":0,"status":"completed"}}',
    '{"type":"item.started","item":{"id":"item_3","type":"web_search","id":"ws_1","query":"codex cli","action":{"type":"search","query":"codex cli"}}}',
    '{"type":"item.completed","item":{"id":"item_4","type":"file_change","changes":[{"path":"patched.txt","kind":"add"}],"status":"completed"}}',
    '{"type":"item.completed","item":{"id":"item_5","type":"agent_message","text":"Hello from fake upstream."}}',
    '{"type":"turn.completed","usage":{"input_tokens":5264,"cached_input_tokens":100,"cache_write_input_tokens":0,"output_tokens":6,"reasoning_output_tokens":7}}',
]

RECORDED_FAILURE = [
    '{"type":"thread.started","thread_id":"t"}',
    '{"type":"turn.started"}',
    '{"type":"error","message":"Reconnecting... 1/5 (unexpected status 401 Unauthorized: Incorrect API key provided: fake., url: http://127.0.0.1:18080/v1/responses)"}',
    '{"type":"error","message":"unexpected status 401 Unauthorized: Incorrect API key provided: fake., url: http://127.0.0.1:18080/v1/responses"}',
    '{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized: Incorrect API key provided: fake., url: http://127.0.0.1:18080/v1/responses"}}',
]
