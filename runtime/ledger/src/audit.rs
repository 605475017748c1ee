//! The approval audit verification runs over a log: every human approval is asked for once,
//! decided at most once, for the call it was asked for, and every invocation that ran under a
//! grant spent one that was given for exactly that call and not spent before.

use std::collections::BTreeMap;

use crate::entry::{Entry, approval_fingerprint, args_digest};

/// What the audit knows of one approval (by its id, the invocation that asked).
struct Asked {
    fingerprint: [u8; 32],
    granted: bool,
    decided: bool,
    spent: bool,
}

/// The approvals seen so far, in log order.
#[derive(Default)]
pub(crate) struct Audit {
    asked: BTreeMap<u64, Asked>,
}

impl Audit {
    /// Checks `entry` (an approval, or a start that spends one) against what came before it:
    /// the reason it breaks the rules, if it does.
    pub(crate) fn entry(&mut self, entry: &Entry) -> Result<(), String> {
        match entry {
            Entry::Approval {
                request,
                action,
                fingerprint,
                ..
            } => match action.as_str() {
                "request" => {
                    if self.asked.contains_key(request) {
                        return Err(format!("approval {request} is asked for twice"));
                    }
                    self.asked.insert(
                        *request,
                        Asked {
                            fingerprint: *fingerprint,
                            granted: false,
                            decided: false,
                            spent: false,
                        },
                    );
                    Ok(())
                }
                "grant" | "deny" => {
                    let asked = self.asked.get_mut(request).ok_or_else(|| {
                        format!("approval {request} is decided ({action}) but was never asked for")
                    })?;
                    if asked.decided {
                        return Err(format!("approval {request} is decided twice"));
                    }
                    if asked.fingerprint != *fingerprint {
                        return Err(format!(
                            "the {action} of approval {request} is for another call than the one asked"
                        ));
                    }
                    asked.decided = true;
                    asked.granted = action == "grant";
                    Ok(())
                }
                other => Err(format!("approval {request}: unknown action `{other}`")),
            },
            Entry::InvocationStart {
                invocation,
                principal,
                capability,
                version,
                function,
                args,
                approval: Some(id),
                ..
            } => {
                let asked = self.asked.get_mut(id).ok_or_else(|| {
                    format!(
                        "invocation {invocation} spends approval {id}, which was never asked for"
                    )
                })?;
                if !asked.granted {
                    return Err(format!(
                        "invocation {invocation} spends approval {id}, which was not granted"
                    ));
                }
                if asked.spent {
                    return Err(format!(
                        "invocation {invocation} spends approval {id}, already spent"
                    ));
                }
                let call = approval_fingerprint(
                    principal,
                    capability,
                    version,
                    function,
                    &args_digest(args),
                );
                if call != asked.fingerprint {
                    return Err(format!(
                        "invocation {invocation} spends approval {id}, granted for another call"
                    ));
                }
                asked.spent = true;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
