//! queue examples (not yet ported; see the README's example table).
