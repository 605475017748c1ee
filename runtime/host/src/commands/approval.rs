//! `approval list | grant | deny`: decide the calls a policy lets run only once a person
//! approves them (`@approval("required")`). Decided as the local operator; each decision is a
//! ledger entry.

use femtoclaw_host::Failure;
use femtoclaw_host::admin::Request;

use super::{Global, out, print_json};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List the approvals: pending, granted, denied, used and expired, with what each approves.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending call: the next identical call may run, once, before the grant expires
    /// (`approvals.grant_ttl_ms`).
    Grant {
        /// The approval's id (the number `approval list` shows).
        id: u64,
        /// Why, recorded with the decision.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Refuse a pending call.
    Deny {
        /// The approval's id.
        id: u64,
        /// Why, recorded with the decision.
        #[arg(long)]
        reason: Option<String>,
    },
}

impl Command {
    pub fn run(self, global: &Global) -> Result<(), Failure> {
        let (id, grant, reason) = match self {
            Command::List { json } => {
                let approvals = global.operate(&Request::ApprovalList)?;
                if json {
                    print_json(&approvals);
                    return Ok(());
                }
                for a in approvals.as_array().into_iter().flatten() {
                    out(&format!(
                        "{:<6} {:<8} {:<28} {}@{}.{} {}",
                        a["id"],
                        a["state"].as_str().unwrap_or_default(),
                        a["principal"].as_str().unwrap_or_default(),
                        a["capability"].as_str().unwrap_or_default(),
                        a["version"].as_str().unwrap_or_default(),
                        a["function"].as_str().unwrap_or_default(),
                        a["args"],
                    ));
                }
                return Ok(());
            }
            Command::Grant { id, reason } => (id, true, reason),
            Command::Deny { id, reason } => (id, false, reason),
        };
        let decided = global.operate(&Request::ApprovalDecide { id, grant, reason })?;
        out(&format!(
            "approval {id} {}",
            decided["state"].as_str().unwrap_or_default()
        ));
        Ok(())
    }
}
