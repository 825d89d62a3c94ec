//! The C symbols of 0.1.0's maintenance functions whose arguments or results 0.2.0 changed. A
//! database still on 0.1.0's schema, between installing this library and `ALTER EXTENSION
//! org_stats UPDATE`, calls them by those symbols: each raises a clear error instead of reading
//! arguments it was not given or returning columns its caller does not expect. Writes, reads,
//! track(), untrack() and DDL keep working on that schema meanwhile (see
//! `storage::schema`).

use crate::pg::errors;
use pgrx::pg_sys;

const V1_API: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };

macro_rules! superseded {
    ($($symbol:ident, $finfo:ident, $function:literal;)*) => {
        $(
            #[pgrx::pg_guard]
            #[unsafe(no_mangle)]
            pub unsafe extern "C-unwind" fn $symbol(
                _fcinfo: pg_sys::FunctionCallInfo,
            ) -> pg_sys::Datum {
                errors::superseded($function)
            }

            #[unsafe(no_mangle)]
            #[doc(hidden)]
            pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
                &V1_API
            }
        )*
    };
}

superseded! {
    check_drift_wrapper, pg_finfo_check_drift_wrapper, "check_drift";
    recalculate_wrapper, pg_finfo_recalculate_wrapper, "recalculate";
    backfill_targets_wrapper, pg_finfo_backfill_targets_wrapper, "backfill_targets";
    backfill_start_wrapper, pg_finfo_backfill_start_wrapper, "backfill_start";
    backfill_batch_wrapper, pg_finfo_backfill_batch_wrapper, "backfill_batch";
    backfill_finish_wrapper, pg_finfo_backfill_finish_wrapper, "backfill_finish";
}
