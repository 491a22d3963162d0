//! Invoices, insurance policies and claims.
//!
//! An invoice (issued by dispensing) is paid by its patient exactly once, in full or not at
//! all. An insurer records a policy for a patient: the share it covers and who approves a
//! claim at each level (say an insurer's officer, then the regulator). The patient claims an
//! unpaid invoice; each level's approver decides in turn; a rejection at any level ends the
//! claim; the final approval pays the insurer's share to the provider and the patient owes
//! the rest. While a claim is open the invoice cannot be paid.

use super::TxScope;
use crate::{
    AccountStatus,
    clinical::{Claim, ClaimDecision, ClaimStatus, Invoice, InvoiceStatus, Policy},
};
use ehrchain_types::{
    AccountId, AuditAction, AuditReason, Field, ItemId, ItemKind, Refusal, Role, Subject,
    clinical::{FULL_COVERAGE_BP, MAX_APPROVAL_LEVELS, MAX_DECISION_REASON},
};

pub fn pay(scope: &mut TxScope<'_>, id: &ItemId) -> Result<(), Refusal> {
    let mut inv: Invoice = scope.item(id)?;
    if scope.sender != inv.patient {
        return Err(Refusal::NotThePatient {
            subject: Subject::Item(*id),
        });
    }
    if inv.status == InvoiceStatus::Paid {
        return Err(Refusal::InvoicePaid { invoice: *id });
    }
    if let Some(claim) = inv.open_claim {
        return Err(Refusal::ClaimOpen {
            invoice: *id,
            claim,
        });
    }
    let due = inv.due();
    let me = scope.sender;
    scope.move_tokens(&me, &inv.payee, due)?;
    inv.status = InvoiceStatus::Paid;
    inv.paid_ms = Some(scope.ctx.timestamp_ms);
    let mut ev = scope.item_event(
        inv.patient,
        AuditAction::InvoicePaid,
        inv.id,
        Some(inv.payee),
    );
    ev.amount = Some(due);
    scope.audit(ev);
    scope.put_item(inv);
    Ok(())
}

pub fn set_policy(
    scope: &mut TxScope<'_>,
    patient: &AccountId,
    coverage_bp: u16,
    approvers: &[AccountId],
    expires_ms: Option<u64>,
) -> Result<(), Refusal> {
    scope.require_active_role(Role::Insurer)?;
    let p = scope.account(patient);
    if p.role != Some(Role::Patient) {
        return Err(Refusal::NotInRole {
            account: *patient,
            role: Role::Patient,
        });
    }
    if coverage_bp > FULL_COVERAGE_BP {
        return Err(Refusal::CoverageTooHigh { coverage_bp });
    }
    if approvers.is_empty() || approvers.len() > MAX_APPROVAL_LEVELS {
        return Err(Refusal::ApprovalLevels {
            count: approvers.len() as u64,
            max: MAX_APPROVAL_LEVELS as u64,
        });
    }
    for (i, a) in approvers.iter().enumerate() {
        if approvers[..i].contains(a) {
            return Err(Refusal::DuplicateApprover { approver: *a });
        }
        let acct = scope.account(a);
        let ok = acct.status == AccountStatus::Active
            && matches!(acct.role, Some(Role::Insurer | Role::Regulator));
        if !ok {
            return Err(Refusal::ApproverNotEligible {
                approver: *a,
                level: i as u32 + 1,
            });
        }
    }
    if let Some(e) = expires_ms
        && e <= scope.ctx.timestamp_ms
    {
        return Err(Refusal::AlreadyExpired {
            expires_ms: e,
            now_ms: scope.ctx.timestamp_ms,
        });
    }
    let policy = Policy {
        id: scope.new_item_id(ItemKind::Policy),
        insurer: scope.sender,
        patient: *patient,
        coverage_bp,
        approvers: approvers.to_vec(),
        created_ms: scope.ctx.timestamp_ms,
        expires_ms,
    };
    let ev = scope.item_event(
        *patient,
        AuditAction::PolicyRecorded,
        policy.id,
        Some(scope.sender),
    );
    scope.audit(ev);
    scope.put_item(policy);
    Ok(())
}

pub fn submit_claim(
    scope: &mut TxScope<'_>,
    invoice: &ItemId,
    policy: &ItemId,
) -> Result<(), Refusal> {
    let mut inv: Invoice = scope.item(invoice)?;
    let pol: Policy = scope.item(policy)?;
    if scope.sender != inv.patient {
        return Err(Refusal::NotThePatient {
            subject: Subject::Item(*invoice),
        });
    }
    if pol.patient != inv.patient {
        return Err(Refusal::PolicyNotForPatient { policy: *policy });
    }
    if !pol.in_force(scope.ctx.timestamp_ms) {
        return Err(Refusal::PolicyExpired {
            policy: *policy,
            expired_ms: pol.expires_ms.expect("only a policy with an expiry lapses"),
        });
    }
    if inv.status == InvoiceStatus::Paid {
        return Err(Refusal::InvoicePaid { invoice: *invoice });
    }
    if let Some(claim) = inv.open_claim {
        return Err(Refusal::ClaimOpen {
            invoice: *invoice,
            claim,
        });
    }
    if inv.insurer_paid > 0 {
        return Err(Refusal::InsurerAlreadyPaid { invoice: *invoice });
    }
    let claim = Claim {
        id: scope.new_item_id(ItemKind::Claim),
        invoice: inv.id,
        policy: pol.id,
        patient: inv.patient,
        insurer: pol.insurer,
        payee: inv.payee,
        amount: inv.amount,
        share: pol.share(inv.amount),
        approvers: pol.approvers.clone(),
        decisions: Vec::new(),
        status: ClaimStatus::Open,
        created_ms: scope.ctx.timestamp_ms,
    };
    inv.open_claim = Some(claim.id);
    let mut ev = scope.item_event(
        inv.patient,
        AuditAction::ClaimSubmitted,
        claim.id,
        Some(pol.insurer),
    );
    ev.amount = Some(claim.share);
    scope.audit(ev);
    scope.put_item(claim);
    scope.put_item(inv);
    Ok(())
}

pub fn withdraw_claim(scope: &mut TxScope<'_>, id: &ItemId) -> Result<(), Refusal> {
    let mut claim: Claim = scope.item(id)?;
    if scope.sender != claim.patient {
        return Err(Refusal::NotThePatient {
            subject: Subject::Item(*id),
        });
    }
    if claim.status != ClaimStatus::Open {
        return Err(Refusal::ClaimNotOpen { claim: *id });
    }
    let mut inv: Invoice = scope.item(&claim.invoice)?;
    inv.open_claim = None;
    claim.status = ClaimStatus::Withdrawn;
    let ev = scope.item_event(
        claim.patient,
        AuditAction::ClaimWithdrawn,
        claim.id,
        Some(claim.insurer),
    );
    scope.audit(ev);
    scope.put_item(inv);
    scope.put_item(claim);
    Ok(())
}

pub fn decide_claim(
    scope: &mut TxScope<'_>,
    id: &ItemId,
    approve: bool,
    reason: &str,
) -> Result<(), Refusal> {
    let mut claim: Claim = scope.item(id)?;
    if reason.len() > MAX_DECISION_REASON {
        return Err(Refusal::FieldTooLong {
            field: Field::Reason,
            len: reason.len() as u64,
            max: MAX_DECISION_REASON as u64,
        });
    }
    // At most MAX_APPROVAL_LEVELS levels.
    let level = claim.decisions.len() as u32 + 1;
    let levels = claim.approvers.len() as u32;
    let Some(next) = claim.next_approver() else {
        return Err(Refusal::ClaimNotOpen { claim: *id });
    };
    if scope.sender != next {
        return Err(
            match claim.approvers.iter().position(|a| *a == scope.sender) {
                Some(i) if i as u32 + 1 > level => Refusal::ClaimLevelNotReached {
                    claim: *id,
                    level,
                    levels,
                    yours: i as u32 + 1,
                },
                Some(i) => Refusal::ClaimLevelDecided {
                    claim: *id,
                    level: i as u32 + 1,
                },
                None => Refusal::NotAnApprover { claim: *id },
            },
        );
    }
    let now = scope.ctx.timestamp_ms;
    claim.decisions.push(ClaimDecision {
        approver: scope.sender,
        approve,
        time_ms: now,
        reason: reason.to_string(),
    });
    let mut ev = scope.item_event(
        claim.patient,
        if approve {
            AuditAction::ClaimApproved
        } else {
            AuditAction::ClaimRejected
        },
        claim.id,
        Some(claim.insurer),
    );
    ev.reason = AuditReason::ClaimLevel {
        level,
        levels,
        reason: reason.to_string(),
    };
    scope.audit(ev);
    let mut inv: Invoice = scope.item(&claim.invoice)?;
    if !approve {
        claim.status = ClaimStatus::Rejected;
        inv.open_claim = None;
    } else if level == levels {
        // The final level: the insurer pays its share to the provider, or nothing happens.
        scope.move_tokens(&claim.insurer, &claim.payee, claim.share)?;
        claim.status = ClaimStatus::Approved;
        inv.open_claim = None;
        inv.insurer_paid = claim.share;
        if inv.insurer_paid == inv.amount {
            inv.status = InvoiceStatus::Paid;
            inv.paid_ms = Some(now);
        }
        let mut ev = scope.item_event(
            claim.patient,
            AuditAction::ClaimPaid,
            claim.id,
            Some(claim.payee),
        );
        ev.amount = Some(claim.share);
        scope.audit(ev);
    }
    scope.put_item(inv);
    scope.put_item(claim);
    Ok(())
}
