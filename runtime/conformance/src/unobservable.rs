//! The implemented requirements no black-box case can verify, each with why: their subject is
//! not a runtime's public surface but the project's own source, tests, benchmarks or CI, or the
//! suite itself. The project's tests verify them (`docs/spec/TRACEABILITY.md`); a report marks
//! them `not-applicable` with the reason, apart from the requirements that merely lack a case yet.
//! The table is checked with the case table: every entry an implemented requirement, none also
//! verified by a case, none twice, each with a reason.

/// Identifier and why no public surface shows it.
pub const UNOBSERVABLE: &[(&str, &str)] = &[
    (
        "FC-COMP-3006",
        "needs a build whose embedded suite is malformed; the project's own tests build one",
    ),
    (
        "FC-COMP-3007",
        "a rule for the reference runtime's CI, which runs the suite and the traceability check",
    ),
    (
        "FC-COMP-3101",
        "half of it is the suite's standalone binary, not a runtime; the runtime's half is in cli.conformance.command",
    ),
    (
        "FC-COMP-3104",
        "a rule for the suite's own cases: what they drive, not what a target shows",
    ),
    (
        "FC-COMP-3106",
        "the suite's case table is refused before any case runs: no target is involved",
    ),
    (
        "FC-COMP-3110",
        "how the suite starts the servers it drives, not what a target shows",
    ),
    ("FC-COMP-3113", "a rule for the reference runtime's CI"),
    (
        "FC-COMP-6001",
        "the traceability check of the specification sources in the repository",
    ),
    (
        "FC-COMP-6002",
        "the traceability check of the repository's tests",
    ),
    (
        "FC-COMP-6003",
        "the traceability check of the repository's tests",
    ),
    (
        "FC-COMP-6004",
        "TRACEABILITY.md is generated from the repository, not by a runtime",
    ),
    (
        "FC-COMP-6005",
        "the index of docs/spec/README.md is generated from the repository, not by a runtime",
    ),
    ("FC-PERF-3201", "a rule for the project's benchmarks"),
    ("FC-PERF-3202", "a rule for the project's benchmarks"),
    ("FC-PERF-3203", "a rule for the project's benchmarks"),
    (
        "FC-PERF-3204",
        "a speed goal, measured by a benchmark against a raw baseline in the same process, never by a test",
    ),
    ("FC-PERF-3214", "a rule for the project's benchmarks"),
    ("FC-PERF-3216", "a rule for the project's benchmarks"),
    ("FC-PERF-3218", "a rule for the project's benchmarks"),
    (
        "FC-PERF-3219",
        "a rule for the project's tests: none is timed",
    ),
    (
        "FC-ABI-4802",
        "how the project's SDK generates its bindings: its source, not a runtime's surface",
    ),
    (
        "FC-COMP-3114",
        "a rule for the suite's own HTTP client, not for what a target shows",
    ),
    (
        "FC-COMP-3116",
        "the suite's own list of requirements no case observes, checked with its case table before any case runs",
    ),
    (
        "FC-CONF-2810",
        "the key reference in the repository's README, generated from the configuration schema",
    ),
    (
        "FC-CORE-0113",
        "the dependency graph of the project's ledger crate, not a runtime's surface",
    ),
    (
        "FC-CRYPTO-3708",
        "the debug form of the ledger library's key type, which no public surface prints",
    ),
    (
        "FC-EXEC-0720",
        "encoded_len is a function of the ledger library; the encoding itself is checked against the golden files",
    ),
    (
        "FC-EXT-5510",
        "the official MCP SDK and conformance suite run against the reference runtime in the project's own tests, not from this suite",
    ),
    (
        "FC-FORMAL-5117",
        "a rule for the project's tests of its policy engine against an independent model",
    ),
    (
        "FC-FORMAL-5216",
        "a rule for how the project changes its model-based test",
    ),
    (
        "FC-MEM-2311",
        "Value::encoded_len is a function of the ledger library, not a runtime's surface",
    ),
    (
        "FC-MEM-2320",
        "Entry::try_encode is a function of the ledger library; no public surface takes a field of 4 GiB",
    ),
    (
        "FC-MEM-2327",
        "a rule for how the project changes its encoding and golden files",
    ),
    ("FC-PERF-5810", "a rule for the project's benchmarks"),
    (
        "FC-PROTO-0927",
        "the official MCP conformance suite runs against the reference runtime in the project's own tests, not from this suite",
    ),
    (
        "FC-PROTO-0928",
        "the official Python MCP SDK runs against the reference runtime in the project's own tests, not from this suite",
    ),
    (
        "FC-CORE-0206",
        "which linked functions an implementation answers through its gate and which it lists as reviewed is its own structure; the suite checks what links (cli.linking.each-world-function-alone) and that every function a guest can call that observes or changes the world is recorded through the gate",
    ),
    (
        "FC-CAP-1013",
        "which linked functions are gated and which reviewed is the implementation's structure; what links, and what a guest's calls record, are checked by the linking and gate cases",
    ),
    (
        "FC-SEC-1301",
        "which linked functions are gated and which reviewed, with what reason, is the implementation's structure; what links, and what a guest's calls record, are checked by the linking and gate cases",
    ),
    (
        "FC-SEC-1903",
        "which linked functions are gated and which reviewed, with what reason, is the implementation's structure; what links is checked by cli.linking.each-world-function-alone",
    ),
    (
        "FC-ABI-4808",
        "which provided functions are gated and which reviewed is the implementation's structure; what links is checked by cli.linking.each-world-function-alone",
    ),
    (
        "FC-SEC-1319",
        "the structural check is the implementation's own test of its linker against its reviewed table",
    ),
    (
        "FC-SEC-1923",
        "the structural check is the implementation's own test of its linker against its reviewed table",
    ),
    (
        "FC-EXEC-0409",
        "the server admits at most `server.concurrency` invocations at once, the number the pool is sized for, and a command runs one: no public surface starts one more than the pool holds",
    ),
    (
        "FC-SEC-1920",
        "the server admits at most `server.concurrency` invocations at once, the number the pool is sized for, and a command runs one: no public surface starts one more than the pool holds",
    ),
    (
        "FC-PERF-5807",
        "the pool's size shows only when it is exceeded, and no public surface starts more invocations than `server.concurrency`, its size",
    ),
    (
        "FC-POL-1709",
        "the memo of call-time decisions is the host's memory: no output shows what it holds or how much",
    ),
    (
        "FC-POL-1614",
        "the grant cache is the host's memory: no output shows how many grants it holds",
    ),
    (
        "FC-SEC-1813",
        "timing independence can only be measured, and the suite asserts no timings on shared machines",
    ),
    (
        "FC-SEC-2024",
        "needs a name server that answers slowly or not at all; the target resolves through the machine's own resolver configuration, which a case does not replace",
    ),
    (
        "FC-CRYPTO-3603",
        "the probe vectors are consistency proofs given as hashes, and no public surface verifies such a proof; the target's own consistency is checked by the pinned-checkpoint cases of `log verify`",
    ),
    (
        "FC-CRYPTO-3628",
        "the vectors are signed notes that are not checkpoints, and no public surface opens a note other than a checkpoint",
    ),
    (
        "FC-CRYPTO-3625",
        "parallel and sequential verification are the internals of one command, which no public surface chooses between; the export-damage cases check the verdict the command gives for flipped bits and cuts",
    ),
    (
        "FC-CRYPTO-4601",
        "no tiles are served (specification 46 is planned); that the tree's root at every size is computable from stored subtree hashes is a property of the ledger library's tree",
    ),
    (
        "FC-CRYPTO-3501",
        "a rule for the suite: it keeps a hostile case per attacker class, and its verdict is theirs, each reported under the requirement it claims",
    ),
    (
        "FC-SEC-2221",
        "the sandbox library's scrubber and its debug form: the host refuses a secret too long for it before any surface could hand it one",
    ),
    (
        "FC-POL-1409",
        "the host refuses at install every import it does not provide, so it asks the policy only about interface names that parse, and builds each call-time request with the scope kind of its action: no public surface hands the policy a malformed request",
    ),
    (
        "FC-FORMAL-5113",
        "the host refuses at install every import it does not provide, so it asks the policy only about interface names that parse, and builds each call-time request with the scope kind of its action: no public surface hands the policy a malformed request",
    ),
    (
        "FC-MEM-2428",
        "the order of the ledger library's own steps and the receipt its append returns; the surfaces' receipts and the durability before an answer are checked by their cases",
    ),
    (
        "FC-MEM-2429",
        "needs the cut of a segment back to its committed length to fail, which no public surface can cause",
    ),
    (
        "FC-SEC-1302",
        "which functions an implementation leaves to its reviewed table is its structure; that every clock, random, filesystem, socket and HTTP call a guest can make is recorded through the gate is FC-SEC-1904's cases",
    ),
    (
        "FC-CAP-1221",
        "which functions an implementation gates and which it reviews is its structure; that every clock, random, filesystem, socket and HTTP call a guest can make is recorded through the gate is FC-SEC-1904's cases",
    ),
];
