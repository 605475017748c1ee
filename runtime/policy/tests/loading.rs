//! Loading policies: syntax and schema errors are located; ids; the digest.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on bad data

use femtoclaw_policy::{Effect, PolicyError, PolicySet};

const GOOD: &str = r#"// a comment line
@id("local-invoke")
permit (
    principal == FemtoClaw::User::"local",
    action == FemtoClaw::Action::"invoke",
    resource
);

forbid (principal, action == FemtoClaw::Action::"invoke", resource)
when { resource.publisher == "evil" };
"#;

// Verifies: FC-POL-1512, FC-POL-1517
#[test]
fn a_policy_with_a_typo_is_rejected_naming_file_and_line() {
    let text = "// ok so far\npermit (principal, action, resource);\n\npermitt (principal, action, resource);\n";
    let err = PolicySet::from_str("typo.cedar", text).unwrap_err();
    let PolicyError::Syntax(problems) = &err else {
        panic!("expected a syntax error, got {err:?}");
    };
    let first = problems.iter().next().unwrap();
    assert_eq!(first.file, "typo.cedar");
    assert_eq!(first.line, 4, "{err}");
    assert_eq!(first.column, 1, "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with("policy file `typo.cedar` line 4, column 1: "),
        "{message}"
    );
}

// Verifies: FC-POL-1517
#[test]
fn a_syntax_error_inside_a_policy_names_its_column() {
    let text = "permit (\n    principal,\n    action == FemtoClaw::Action::\"invoke\",\n    resource,,\n);\n";
    let err = PolicySet::from_str("x.cedar", text).unwrap_err();
    let first = &err.problems()[0];
    assert_eq!((first.line, first.column), (4, 14), "{err}");
    assert!(err.to_string().contains("unexpected token"), "{err}");
}

// Verifies: FC-POL-1501
#[test]
fn an_unknown_attribute_is_rejected_by_the_schema_with_its_location() {
    let text = "permit (principal, action == FemtoClaw::Action::\"invoke\", resource)\nwhen {\n  resource.owner == \"me\"\n};\n";
    let err = PolicySet::from_str("attr.cedar", text).unwrap_err();
    let PolicyError::Validation(problems) = &err else {
        panic!("expected a validation error, got {err:?}");
    };
    let first = problems.iter().next().unwrap();
    assert_eq!(first.file, "attr.cedar");
    assert_eq!(first.line, 3, "{err}");
    assert_eq!(first.column, 3, "{err}");
    assert_eq!(first.policy_id.as_deref(), Some("attr.cedar:0"));
    assert!(err.to_string().contains("owner"), "{err}");
}

// Verifies: FC-POL-1501
#[test]
fn an_unknown_entity_type_is_rejected_by_the_schema_with_its_location() {
    let text = "\n\npermit (principal == FemtoClaw::Robot::\"r2\", action, resource);\n";
    let err = PolicySet::from_str("type.cedar", text).unwrap_err();
    assert!(matches!(err, PolicyError::Validation(_)), "{err:?}");
    let first = &err.problems()[0];
    assert_eq!(first.line, 3, "{err}");
    assert!(err.to_string().contains("FemtoClaw::Robot"), "{err}");
}

// Verifies: FC-POL-1501
#[test]
fn an_unknown_action_is_rejected_by_the_schema() {
    let text = "permit (principal, action == FemtoClaw::Action::\"net.listen\", resource);";
    let err = PolicySet::from_str("a.cedar", text).unwrap_err();
    assert!(matches!(err, PolicyError::Validation(_)), "{err:?}");
    assert!(err.to_string().contains("net.listen"), "{err}");
}

// Verifies: FC-POL-1504
#[test]
fn policy_ids_come_from_the_id_annotation_else_file_and_index() {
    let set = PolicySet::from_str("ops.cedar", GOOD).unwrap();
    let ids: Vec<&str> = set.ids().collect();
    assert_eq!(ids, ["local-invoke", "ops.cedar:1"]);
    let infos = set.policies();
    assert_eq!(infos[0].line, 2);
    assert_eq!(infos[0].effect, Effect::Permit);
    assert_eq!(infos[1].line, 9);
    assert_eq!(infos[1].effect, Effect::Forbid);
    assert!(infos[1].text.starts_with("forbid"));
}

// Verifies: FC-POL-1504
#[test]
fn a_duplicate_id_is_rejected() {
    let text = "@id(\"same\") permit (principal, action, resource);\n@id(\"same\") forbid (principal, action, resource);\n";
    let err = PolicySet::from_str("dup.cedar", text).unwrap_err();
    assert_eq!(err.problems()[0].line, 2, "{err}");
    assert!(
        err.to_string().contains("duplicate policy id `same`"),
        "{err}"
    );
}

// Verifies: FC-POL-1504
#[test]
fn an_empty_id_is_rejected() {
    let text =
        "permit (principal, action, resource);\n@id(\"\") permit (principal, action, resource);\n";
    let err = PolicySet::from_str("e.cedar", text).unwrap_err();
    assert_eq!(err.problems()[0].line, 2, "{err}");
    assert!(
        err.to_string().contains("`@id` annotation is empty"),
        "{err}"
    );
}

// Verifies: FC-POL-1502
#[test]
fn templates_are_refused() {
    let text = "permit (principal == ?principal, action, resource);";
    let err = PolicySet::from_str("t.cedar", text).unwrap_err();
    assert!(err.to_string().contains("templates"), "{err}");
}

// Verifies: FC-POL-1506
#[test]
fn a_directory_loads_every_cedar_file_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("b.cedar"),
        "permit (principal, action, resource);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.cedar"),
        "forbid (principal, action, resource);",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a policy").unwrap();
    let set = PolicySet::from_dir(dir.path()).unwrap();
    let ids: Vec<&str> = set.ids().collect();
    assert_eq!(ids, ["a.cedar:0", "b.cedar:0"]);
}

// Verifies: FC-POL-1506, FC-POL-1512
#[test]
fn an_error_in_a_directory_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.cedar"),
        "permit (principal, action, resource);",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("z.cedar"),
        "\npermit (principal action, resource);",
    )
    .unwrap();
    let err = PolicySet::from_dir(dir.path()).unwrap_err();
    assert!(
        err.to_string().starts_with("policy file `z.cedar` line 2"),
        "{err}"
    );
}

// Verifies: FC-POL-1506
#[test]
fn an_empty_directory_and_a_missing_file_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = PolicySet::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, PolicyError::EmptyDir { .. }), "{err:?}");
    let err = PolicySet::from_file(dir.path().join("nope.cedar")).unwrap_err();
    assert!(matches!(err, PolicyError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.cedar"), "{err}");
}

// Verifies: FC-POL-1506
#[test]
fn a_file_is_named_by_its_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops.cedar");
    std::fs::write(&path, GOOD).unwrap();
    let set = PolicySet::from_file(&path).unwrap();
    assert_eq!(set.policies()[1].id, "ops.cedar:1");
    assert_eq!(set.policies()[1].file, "ops.cedar");
}

// Verifies: FC-POL-1509
#[test]
fn the_digest_is_stable_across_loads_of_the_same_content() {
    let a = PolicySet::from_str("ops.cedar", GOOD).unwrap();
    let b = PolicySet::from_str("ops.cedar", GOOD).unwrap();
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.digest_hex().len(), 64);
    // Splitting the same policies over files in another order does not matter either
    // (ids are kept by the annotation).
    let (first, second) = GOOD.split_at(GOOD.find("forbid").unwrap());
    let second = format!("@id(\"ops.cedar:1\")\n{second}");
    let c = PolicySet::from_sources([("z.cedar", first.to_owned()), ("a.cedar", second)]).unwrap();
    let d = PolicySet::from_str(
        "ops.cedar",
        &GOOD.replace("forbid (", "@id(\"ops.cedar:1\")\nforbid ("),
    )
    .unwrap();
    assert_eq!(c.digest(), d.digest());
}

// Verifies: FC-POL-1509
#[test]
fn the_digest_changes_when_any_policy_text_changes() {
    let a = PolicySet::from_str("ops.cedar", GOOD).unwrap();
    let changed = GOOD.replace("\"evil\"", "\"evil2\"");
    let b = PolicySet::from_str("ops.cedar", &changed).unwrap();
    assert_ne!(a.digest(), b.digest());
    let renamed = GOOD.replace("local-invoke", "local-invoke-2");
    let c = PolicySet::from_str("ops.cedar", &renamed).unwrap();
    assert_ne!(a.digest(), c.digest());
    let empty = PolicySet::empty().unwrap();
    assert_ne!(a.digest(), empty.digest());
}

// Verifies: FC-POL-1510
#[test]
fn the_default_policy_loads_and_is_annotated() {
    let set = PolicySet::default_policy().unwrap();
    assert!(set.ids().all(|id| id.starts_with("default:")));
    assert!(set.warnings().is_empty(), "{:?}", set.warnings());
}

// Verifies: FC-POL-1503
#[test]
fn a_policy_that_can_never_apply_is_refused() {
    // `link` applies to interfaces, never to capabilities: this forbid would protect nothing.
    let text = "permit (principal, action, resource);\nforbid (principal, action == FemtoClaw::Action::\"link\", resource == FemtoClaw::Capability::\"x\");\n";
    let err = PolicySet::from_str("never.cedar", text).unwrap_err();
    assert!(matches!(err, PolicyError::Validation(_)), "{err:?}");
    assert_eq!(err.problems()[0].line, 2, "{err}");
    assert_eq!(
        err.problems()[0].policy_id.as_deref(),
        Some("never.cedar:1")
    );
}
