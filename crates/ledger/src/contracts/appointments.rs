//! Appointments: a doctor publishes slots with a fee; a patient books one and the fee moves
//! into escrow; the doctor confirms or declines; cancelling before the start refunds;
//! completing pays the doctor.
//!
//! | from | move | by | to | tokens |
//! |---|---|---|---|---|
//! | — | `add_slot` | doctor | open | — |
//! | open | `book` (before start) | patient | requested | fee → escrow |
//! | requested | `answer_booking` confirm | doctor | confirmed | — |
//! | requested | `answer_booking` decline | doctor | open | escrow → patient |
//! | requested, confirmed | `cancel_booking` (before start) | patient | open | escrow → patient |
//! | open, requested, confirmed | `cancel_booking` (before start) | doctor | withdrawn | escrow → patient |
//! | requested | `cancel_booking` (after start: never confirmed) | patient | open | escrow → patient |
//! | confirmed | `cancel_booking` (a week after the end: never completed) | patient | withdrawn | escrow → patient |
//! | confirmed | `complete_appointment` (after start) | doctor | completed | escrow → doctor |

use super::{TxScope, token::escrow_account};
use crate::clinical::{Slot, SlotStatus};
use ehrchain_types::{AuditAction, Field, ItemId, ItemKind, Refusal, Role};

/// Longest slot accepted (a day).
pub const MAX_SLOT_MINUTES: u32 = 24 * 60;
/// How long after a confirmed appointment's end the patient may reclaim the fee if the doctor
/// never completed it.
pub const UNCOMPLETED_REFUND_AFTER_MS: u64 = 7 * 24 * 3600 * 1000;

/// Records an appointment event: the patient (or, for an unbooked slot, the doctor) is the
/// subject; the other party is the counterparty.
fn audit(scope: &mut TxScope<'_>, slot: &Slot, action: AuditAction, amount: Option<u64>) {
    let patient = slot.patient.unwrap_or(slot.doctor);
    let other = if scope.sender == slot.doctor {
        slot.patient
    } else {
        Some(slot.doctor)
    };
    let mut ev = scope.item_event(patient, action, slot.id, other);
    ev.amount = amount;
    scope.audit(ev);
}

pub fn add_slot(
    scope: &mut TxScope<'_>,
    start_ms: u64,
    minutes: u32,
    fee: u64,
) -> Result<(), Refusal> {
    scope.require_active_role(Role::Doctor)?;
    if start_ms <= scope.ctx.timestamp_ms {
        return Err(Refusal::StartInPast {
            start_ms,
            now_ms: scope.ctx.timestamp_ms,
        });
    }
    if minutes == 0 || minutes > MAX_SLOT_MINUTES {
        return Err(Refusal::SlotLength {
            minutes,
            max: MAX_SLOT_MINUTES,
        });
    }
    scope.within_supply(Field::Fee, fee)?;
    let slot = Slot {
        id: scope.new_item_id(ItemKind::Slot),
        doctor: scope.sender,
        start_ms,
        minutes,
        fee,
        status: SlotStatus::Open,
        patient: None,
        booked_ms: None,
    };
    audit(scope, &slot, AuditAction::SlotPublished, None);
    scope.put_item(slot);
    Ok(())
}

pub fn book(scope: &mut TxScope<'_>, id: &ItemId) -> Result<(), Refusal> {
    scope.require_active_role(Role::Patient)?;
    let mut slot: Slot = scope.item(id)?;
    if slot.status != SlotStatus::Open {
        return Err(Refusal::SlotNotOpen { slot: *id });
    }
    if scope.ctx.timestamp_ms >= slot.start_ms {
        return Err(Refusal::SlotStarted { slot: *id });
    }
    let me = scope.sender;
    scope.move_tokens(&me, &escrow_account(), slot.fee)?;
    slot.status = SlotStatus::Requested;
    slot.patient = Some(me);
    slot.booked_ms = Some(scope.ctx.timestamp_ms);
    audit(scope, &slot, AuditAction::AppointmentBooked, Some(slot.fee));
    scope.put_item(slot);
    Ok(())
}

pub fn answer(scope: &mut TxScope<'_>, id: &ItemId, confirm: bool) -> Result<(), Refusal> {
    let mut slot: Slot = scope.item(id)?;
    if scope.sender != slot.doctor {
        return Err(Refusal::NotSlotDoctor { slot: *id });
    }
    if slot.status != SlotStatus::Requested {
        return Err(Refusal::NotRequested { slot: *id });
    }
    if confirm {
        if scope.ctx.timestamp_ms >= slot.start_ms {
            return Err(Refusal::StartedUnconfirmed { slot: *id });
        }
        slot.status = SlotStatus::Confirmed;
        audit(scope, &slot, AuditAction::AppointmentConfirmed, None);
    } else {
        let patient = slot.patient.expect("a requested slot has a patient");
        scope.move_tokens(&escrow_account(), &patient, slot.fee)?;
        audit(
            scope,
            &slot,
            AuditAction::AppointmentDeclined,
            Some(slot.fee),
        );
        slot.status = SlotStatus::Open;
        slot.patient = None;
        slot.booked_ms = None;
    }
    scope.put_item(slot);
    Ok(())
}

pub fn cancel(scope: &mut TxScope<'_>, id: &ItemId) -> Result<(), Refusal> {
    let mut slot: Slot = scope.item(id)?;
    let now = scope.ctx.timestamp_ms;
    let before_start = now < slot.start_ms;
    let by_doctor = scope.sender == slot.doctor;
    let by_patient = slot.patient == Some(scope.sender);
    if !by_doctor && !by_patient {
        return Err(Refusal::NotSlotParty { slot: *id });
    }
    let booked = matches!(slot.status, SlotStatus::Requested | SlotStatus::Confirmed);
    let refund_from_ms = slot.end_ms().saturating_add(UNCOMPLETED_REFUND_AFTER_MS);
    let allowed = match (by_doctor, slot.status) {
        (true, SlotStatus::Open) => true,
        (true, SlotStatus::Requested | SlotStatus::Confirmed) => before_start,
        (false, SlotStatus::Requested) => true,
        (false, SlotStatus::Confirmed) => before_start || now >= refund_from_ms,
        _ => false,
    };
    if !allowed {
        return Err(if by_doctor && booked {
            Refusal::DoctorCancelAfterStart { slot: *id }
        } else if booked {
            Refusal::RefundNotYet {
                slot: *id,
                refund_from_ms,
            }
        } else {
            Refusal::SlotClosed { slot: *id }
        });
    }
    let refund = if booked {
        let patient = slot.patient.expect("a booked slot has a patient");
        scope.move_tokens(&escrow_account(), &patient, slot.fee)?;
        Some(slot.fee)
    } else {
        None
    };
    audit(scope, &slot, AuditAction::AppointmentCancelled, refund);
    if by_doctor || !before_start && slot.status == SlotStatus::Confirmed {
        slot.status = SlotStatus::Withdrawn;
    } else {
        // The patient gave the slot back: others may book it.
        slot.status = SlotStatus::Open;
        slot.patient = None;
        slot.booked_ms = None;
    }
    scope.put_item(slot);
    Ok(())
}

pub fn complete(scope: &mut TxScope<'_>, id: &ItemId) -> Result<(), Refusal> {
    let mut slot: Slot = scope.item(id)?;
    if scope.sender != slot.doctor {
        return Err(Refusal::NotSlotDoctor { slot: *id });
    }
    if slot.status != SlotStatus::Confirmed {
        return Err(Refusal::NotConfirmed { slot: *id });
    }
    if scope.ctx.timestamp_ms < slot.start_ms {
        return Err(Refusal::NotStarted { slot: *id });
    }
    let doctor = slot.doctor;
    scope.move_tokens(&escrow_account(), &doctor, slot.fee)?;
    slot.status = SlotStatus::Completed;
    audit(
        scope,
        &slot,
        AuditAction::AppointmentCompleted,
        Some(slot.fee),
    );
    scope.put_item(slot);
    Ok(())
}
