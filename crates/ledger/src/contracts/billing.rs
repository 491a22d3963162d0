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
    AccountStatus, TxError,
    clinical::{Claim, ClaimDecision, ClaimStatus, Invoice, InvoiceStatus, Policy},
};
use ehrchain_types::{
    AccountId, AuditAction, ItemId, ItemKind, Role,
    clinical::{FULL_COVERAGE_BP, MAX_APPROVAL_LEVELS, MAX_DECISION_REASON},
};

fn refused(msg: impl Into<String>) -> TxError {
    TxError::Refused(msg.into())
}

pub fn pay(scope: &mut TxScope<'_>, id: &ItemId) -> Result<(), TxError> {
    let mut inv: Invoice = scope.item(id)?;
    if scope.sender != inv.patient {
        return Err(refused(format!("{id} is not addressed to you")));
    }
    if inv.status == InvoiceStatus::Paid {
        return Err(refused(format!("{id} is already paid")));
    }
    if let Some(c) = inv.open_claim {
        return Err(refused(format!(
            "claim {c} on {id} is being decided: pay after the decision"
        )));
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
) -> Result<(), TxError> {
    scope.require_active_role(Role::Insurer)?;
    let p = scope.account(patient);
    if p.role != Some(Role::Patient) {
        return Err(refused(format!("{patient} is not a registered patient")));
    }
    if coverage_bp > FULL_COVERAGE_BP {
        return Err(refused(format!(
            "coverage is at most 100 % ({FULL_COVERAGE_BP} basis points), not {coverage_bp}"
        )));
    }
    if approvers.is_empty() || approvers.len() > MAX_APPROVAL_LEVELS {
        return Err(refused(format!(
            "a policy has 1 to {MAX_APPROVAL_LEVELS} approval levels, not {}",
            approvers.len()
        )));
    }
    for (i, a) in approvers.iter().enumerate() {
        if approvers[..i].contains(a) {
            return Err(refused(format!("{a} approves more than one level")));
        }
        let acct = scope.account(a);
        let ok = acct.status == AccountStatus::Active
            && matches!(acct.role, Some(Role::Insurer | Role::Regulator));
        if !ok {
            return Err(refused(format!(
                "approver {a} of level {} is not an approved insurer or regulator",
                i + 1
            )));
        }
    }
    if expires_ms.is_some_and(|e| e <= scope.ctx.timestamp_ms) {
        return Err(refused("the policy would already have expired"));
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
) -> Result<(), TxError> {
    let mut inv: Invoice = scope.item(invoice)?;
    let pol: Policy = scope.item(policy)?;
    if scope.sender != inv.patient {
        return Err(refused(format!("{invoice} is not addressed to you")));
    }
    if pol.patient != inv.patient {
        return Err(refused(format!("{policy} does not cover you")));
    }
    if !pol.in_force(scope.ctx.timestamp_ms) {
        return Err(refused(format!("{policy} has expired")));
    }
    if inv.status == InvoiceStatus::Paid {
        return Err(refused(format!("{invoice} is already paid")));
    }
    if let Some(c) = inv.open_claim {
        return Err(refused(format!("claim {c} on {invoice} is still open")));
    }
    if inv.insurer_paid > 0 {
        return Err(refused(format!(
            "an insurer already paid its share of {invoice}"
        )));
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

pub fn withdraw_claim(scope: &mut TxScope<'_>, id: &ItemId) -> Result<(), TxError> {
    let mut claim: Claim = scope.item(id)?;
    if scope.sender != claim.patient {
        return Err(refused("only the patient withdraws their claim"));
    }
    if claim.status != ClaimStatus::Open {
        return Err(refused(format!(
            "{id} is {}: it cannot be withdrawn",
            claim.status.name()
        )));
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
) -> Result<(), TxError> {
    let mut claim: Claim = scope.item(id)?;
    if reason.len() > MAX_DECISION_REASON {
        return Err(TxError::FieldTooLong {
            field: "reason",
            len: reason.len(),
            max: MAX_DECISION_REASON,
        });
    }
    let level = claim.decisions.len() + 1;
    let Some(next) = claim.next_approver() else {
        return Err(refused(format!(
            "{id} is {}: nothing left to decide",
            claim.status.name()
        )));
    };
    if scope.sender != next {
        return Err(
            match claim.approvers.iter().position(|a| *a == scope.sender) {
                Some(i) if i + 1 > level => refused(format!(
                    "{id} waits for level {level} of {}; you approve level {}",
                    claim.approvers.len(),
                    i + 1
                )),
                Some(i) => refused(format!("you already decided level {} of {id}", i + 1)),
                None => refused(format!("you are not an approver of {id}")),
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
    ev.reason = format!("level {level} of {}: {reason}", claim.approvers.len());
    scope.audit(ev);
    let mut inv: Invoice = scope.item(&claim.invoice)?;
    if !approve {
        claim.status = ClaimStatus::Rejected;
        inv.open_claim = None;
    } else if level == claim.approvers.len() {
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
