"""Code the tests share; nothing here is collected as a test.

* ``fakes``: test settings, the model catalog, the scripted in-process backend, a tiny PNG,
  the FIFO the fake codex reports its pids on;
* ``servers``: the app in process, on a real Hypercorn (with the fake codex or the real Codex
  CLI against the fake upstream), and the sync ``openai`` client in a worker thread;
* ``sse``: the one parser of server-sent events (chat chunks and Responses events alike);
* ``spec``: the Responses API's OpenAPI schemas as a validator, and the SDKs' stream rules;
* ``recordings``: lines the real Codex CLI printed, for the parser and transcript tests;
* ``security``: inputs and checks the security tests of every layer share;
* ``harness``: ``/proc`` probes, the server as a child process, raw HTTP, answer checks;
* ``codex_cli``: finding, configuring and running the real Codex CLI, and ``FakeUpstream``;
* ``fake_codex`` (a fake ``codex`` executable) and ``fake_upstream`` (a fake Responses API),
  both run as scripts;
* ``paths``: where the test data, the Node packages and the scripts are.
"""
