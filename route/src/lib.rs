//! route: INS checks, identity-vigilance matching and routing decisions (placeholder).
