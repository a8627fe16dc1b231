//! Client registration (spec 2.4.7). The responses carry no result header: only
//! `identified` and the server's version.

use super::wire_message;

/// The version string Seata 1.2 peers send and expect.
pub const SEATA_VERSION: &str = "1.2.0";

wire_message! {
    /// TM → TC: first frame on a TM connection.
    for [RegisterTmRequest] {
        version: String as str16,
        application_id: String as str16,
        transaction_service_group: String as str16,
        extra_data: String as str16,
    }
}

wire_message! {
    /// RM → TC: first frame on an RM connection, and again whenever the RM gains a resource.
    for [RegisterRmRequest] {
        version: String as str16,
        application_id: String as str16,
        transaction_service_group: String as str16,
        extra_data: String as str16,
        /// Resource ids joined with `,` (no spaces); empty when none.
        resource_ids: String as str32,
    }
}

impl RegisterRmRequest {
    /// The resource ids as a list, skipping empty entries.
    pub fn resource_id_list(&self) -> impl Iterator<Item = &str> {
        self.resource_ids.split(',').filter(|s| !s.is_empty())
    }
}

wire_message! {
    /// TC → client: whether the registration was accepted.
    for [RegisterTmResponse, RegisterRmResponse] {
        identified: bool as bool8,
        version: String as str16,
    }
}
