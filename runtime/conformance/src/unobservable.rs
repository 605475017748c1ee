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
        "FC-SEC-2221",
        "the sandbox library's scrubber and its debug form: the host refuses a secret too long for it before any surface could hand it one",
    ),
];
