//! JDV_J07 XdsTypeCode CI-SIS (value set 1.2.250.1.213.1.1.5.471, dateMaj 20240927120000):
//! the XDS typeCodes a CI-SIS document may carry. Generated once from
//! the ANS value-set file `JDV_J07_XdsTypeCode_CISIS.xml` (docs/domain.md §3.2) and
//! committed: the product reads no file at run time; `normalize/tests/xds_types.rs` checks the
//! table still matches that file (re-generate the rows when the value set changes).

/// One concept of the value set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdsType {
    pub code: &'static str,
    pub code_system: &'static str,
    pub display: &'static str,
}

/// OID of JDV_J07.
pub const J07_OID: &str = "1.2.250.1.213.1.1.5.471";

/// Every concept of JDV_J07, in the file's order.
pub const J07: &[XdsType] = &[
    XdsType {
        code: "ATTEST-ASS-COMPL",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Attestation assurance complémentaire",
    },
    XdsType {
        code: "ATTEST-RESID",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Attestation de résidence",
    },
    XdsType {
        code: "ATTEST-HEBGT",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Attestation d'hébergement",
    },
    XdsType {
        code: "ATTEST-DROITS-AM",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Attestation de droits à l'assurance maladie",
    },
    XdsType {
        code: "AUTORIS-SOINS",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Autorisation de soins et actes non usuels sanitaires",
    },
    XdsType {
        code: "BIL_AUTO",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "CR de bilan d'évaluation de la perte d'autonomie",
    },
    XdsType {
        code: "CERT_DECL",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Certificat, déclaration",
    },
    XdsType {
        code: "DISP_AUT",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Dispensation (autre)",
    },
    XdsType {
        code: "EXPPAT_1",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Volontés et droits du patient",
    },
    XdsType {
        code: "EXPPAT_2",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Autre document du patient",
    },
    XdsType {
        code: "EXPPAT_3",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Directives anticipées",
    },
    XdsType {
        code: "IMG-KOS",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Reference d'objets d'un examen d'imagerie",
    },
    XdsType {
        code: "PROT_ALD",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Protocole de soins ALD",
    },
    XdsType {
        code: "REMB",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Données de remboursement",
    },
    XdsType {
        code: "SYNTH",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Synthèse",
    },
    XdsType {
        code: "DOCPAT01",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Synthèse déposée par le patient",
    },
    XdsType {
        code: "DOCPAT02",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Traitement ou document de soins déposé par le patient",
    },
    XdsType {
        code: "DOCPAT03",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "CR déposé par le patient",
    },
    XdsType {
        code: "DOCPAT04",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Imagerie déposée par le patient",
    },
    XdsType {
        code: "DOCPAT05",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "CR de biologie déposé par le patient",
    },
    XdsType {
        code: "DOCPAT06",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "CR de prévention déposé par le patient",
    },
    XdsType {
        code: "DOCPAT07",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Certificat déposé par le patient",
    },
    XdsType {
        code: "DOCPAT08",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Profil médical Mon espace santé",
    },
    XdsType {
        code: "DOCPAT09",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Document administratif déposé par le patient",
    },
    XdsType {
        code: "PIECE-IDENTITE",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Copie pièce d'identité",
    },
    XdsType {
        code: "PRESC-AAT",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Prescription arrêt de travail",
    },
    XdsType {
        code: "PRESC-BIO",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Prescription d'actes de biologie médicale",
    },
    XdsType {
        code: "PRESC-KINE",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Prescription d'actes de kinésithérapie",
    },
    XdsType {
        code: "PRESC-INF",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Prescription d'actes infirmiers",
    },
    XdsType {
        code: "PRESC-PEDI",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Prescription d'actes de pédicurie",
    },
    XdsType {
        code: "PRESC-ORTHOPHO",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Prescription d'actes d'orthophonie",
    },
    XdsType {
        code: "PRESC-ORTHOPTIE",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Prescription d'actes d'orthoptie",
    },
    XdsType {
        code: "FEUILLE-DE-STYLE",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Feuille de style",
    },
    XdsType {
        code: "FICHE-CONTACTS",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Fiche contacts",
    },
    XdsType {
        code: "EXPORT_DUI",
        code_system: "1.2.250.1.213.1.1.4.12",
        display: "Export du Dossier Usager Informatisé",
    },
    XdsType {
        code: "11369-6",
        code_system: "2.16.840.1.113883.6.1",
        display: "Historique des vaccinations",
    },
    XdsType {
        code: "11488-4",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR ou fiche de consultation ou de visite",
    },
    XdsType {
        code: "11490-0",
        code_system: "2.16.840.1.113883.6.1",
        display: "Lettre de liaison à la sortie d'un établissement de soins",
    },
    XdsType {
        code: "34112-3",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR hospitalier (séjour)",
    },
    XdsType {
        code: "11502-2",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR d'examens biologiques",
    },
    XdsType {
        code: "11505-5",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR d'acte thérapeutique (autre)",
    },
    XdsType {
        code: "11506-3",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR ou fiche de suivi de soins par auxiliaire médical",
    },
    XdsType {
        code: "15507-7",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR de passage aux urgences",
    },
    XdsType {
        code: "15508-5",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR d'accouchement",
    },
    XdsType {
        code: "18776-5",
        code_system: "2.16.840.1.113883.6.1",
        display: "Plan personnalisé de soins",
    },
    XdsType {
        code: "18748-4",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR d'imagerie médicale",
    },
    XdsType {
        code: "18761-7",
        code_system: "2.16.840.1.113883.6.1",
        display: "Note de transfert (dont lettre de liaison à l'entrée en établissement de soins)",
    },
    XdsType {
        code: "28617-9",
        code_system: "2.16.840.1.113883.6.1",
        display: "Bilan bucco-dentaire",
    },
    XdsType {
        code: "28653-4",
        code_system: "2.16.840.1.113883.6.1",
        display: "Document du secteur social / médico-social",
    },
    XdsType {
        code: "29274-8",
        code_system: "2.16.840.1.113883.6.1",
        display: "Mesures de signes vitaux",
    },
    XdsType {
        code: "34120-6",
        code_system: "2.16.840.1.113883.6.1",
        display: "Bilan par professionnel de santé",
    },
    XdsType {
        code: "34133-9",
        code_system: "2.16.840.1.113883.6.1",
        display: "Synthèse d'épisode de soins",
    },
    XdsType {
        code: "34749-2",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR de consultation pré-anesthésique",
    },
    XdsType {
        code: "34794-8",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR de réunion de concertation pluridisciplinaire",
    },
    XdsType {
        code: "34842-5",
        code_system: "2.16.840.1.113883.6.1",
        display: "Grille d'évaluation médico-social",
    },
    XdsType {
        code: "34874-8",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR opératoire",
    },
    XdsType {
        code: "34875-5",
        code_system: "2.16.840.1.113883.6.1",
        display: "Évaluation postopératoire et note de suivi",
    },
    XdsType {
        code: "47420-5",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR de bilan fonctionnel",
    },
    XdsType {
        code: "51851-4",
        code_system: "2.16.840.1.113883.6.1",
        display: "Document administratif",
    },
    XdsType {
        code: "51969-4",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR de génétique moléculaire",
    },
    XdsType {
        code: "52040-3",
        code_system: "2.16.840.1.113883.6.1",
        display: "Document encapsulant une image d'illustration non DICOM",
    },
    XdsType {
        code: "55115-0",
        code_system: "2.16.840.1.113883.6.1",
        display: "Demande d'actes d'imagerie",
    },
    XdsType {
        code: "56445-0",
        code_system: "2.16.840.1.113883.6.1",
        display: "Bilan médicamenteux (Officine)",
    },
    XdsType {
        code: "56446-8",
        code_system: "2.16.840.1.113883.6.1",
        display: "Notification de rendez-vous",
    },
    XdsType {
        code: "57828-6",
        code_system: "2.16.840.1.113883.6.1",
        display: "Prescription (autre)",
    },
    XdsType {
        code: "57832-8",
        code_system: "2.16.840.1.113883.6.1",
        display: "Prescription de soins",
    },
    XdsType {
        code: "57833-6",
        code_system: "2.16.840.1.113883.6.1",
        display: "Prescription de produits de santé",
    },
    XdsType {
        code: "59283-2",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR d'examen de l'enfant",
    },
    XdsType {
        code: "59284-0",
        code_system: "2.16.840.1.113883.6.1",
        display: "Attestation de consentement",
    },
    XdsType {
        code: "60280-5",
        code_system: "2.16.840.1.113883.6.1",
        display: "Fiche de retour du service des urgences",
    },
    XdsType {
        code: "60568-3",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR d'anatomie et de cytologie pathologiques",
    },
    XdsType {
        code: "60591-5",
        code_system: "2.16.840.1.113883.6.1",
        display: "Synthèse médicale",
    },
    XdsType {
        code: "60593-1",
        code_system: "2.16.840.1.113883.6.1",
        display: "Dispensation médicamenteuse",
    },
    XdsType {
        code: "61357-0",
        code_system: "2.16.840.1.113883.6.1",
        display: "Intervention pharmaceutique",
    },
    XdsType {
        code: "67851-6",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR d'admission",
    },
    XdsType {
        code: "68599-0",
        code_system: "2.16.840.1.113883.6.1",
        display: "Synthèse psychiatrique",
    },
    XdsType {
        code: "68817-6",
        code_system: "2.16.840.1.113883.6.1",
        display: "Bilan de santé et de prévention de l'enfant",
    },
    XdsType {
        code: "70004-7",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR d'acte diagnostique (autre)",
    },
    XdsType {
        code: "78341-5",
        code_system: "2.16.840.1.113883.6.1",
        display: "Fiche de transfert vers le service des urgences",
    },
    XdsType {
        code: "74207-2",
        code_system: "2.16.840.1.113883.6.1",
        display: "Document de liaison d'urgence",
    },
    XdsType {
        code: "74465-6",
        code_system: "2.16.840.1.113883.6.1",
        display: "Questionnaire patient",
    },
    XdsType {
        code: "75468-9",
        code_system: "2.16.840.1.113883.6.1",
        display: "Renouvellement ordonnance par pharmacien correspondant",
    },
    XdsType {
        code: "75482-0",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR d'acte thérapeutique à visée préventive",
    },
    XdsType {
        code: "75492-9",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR d'acte diagnostique à visée préventive ou de dépistage",
    },
    XdsType {
        code: "75496-0",
        code_system: "2.16.840.1.113883.6.1",
        display: "Demande d'acte de télémédecine",
    },
    XdsType {
        code: "77436-4",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR d'anesthésie",
    },
    XdsType {
        code: "77604-7",
        code_system: "2.16.840.1.113883.6.1",
        display: "Planification thérapeutique",
    },
    XdsType {
        code: "78513-9",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR de consultation en ophtalmologie",
    },
    XdsType {
        code: "78601-2",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR d'entretien pharmaceutique",
    },
    XdsType {
        code: "80565-5",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR d'administration de médicaments",
    },
    XdsType {
        code: "80771-9",
        code_system: "2.16.840.1.113883.6.1",
        display: "Projet d'accueil individualisé",
    },
    XdsType {
        code: "80788-3",
        code_system: "2.16.840.1.113883.6.1",
        display: "Projet personnalisé d'accompagnement",
    },
    XdsType {
        code: "80820-4",
        code_system: "2.16.840.1.113883.6.1",
        display: "Formulaire de conciliation médicamenteuse (Hôpital)",
    },
    XdsType {
        code: "83836-7",
        code_system: "2.16.840.1.113883.6.1",
        display: "Schéma dentaire",
    },
    XdsType {
        code: "83869-8",
        code_system: "2.16.840.1.113883.6.1",
        display: "Plan personnalisé de prévention",
    },
    XdsType {
        code: "83901-9",
        code_system: "2.16.840.1.113883.6.1",
        display: "Bilan psychologique",
    },
    XdsType {
        code: "83981-1",
        code_system: "2.16.840.1.113883.6.1",
        display: "Lettre de liaison à la sortie d'une structure sociale ou médico-sociale",
    },
    XdsType {
        code: "85208-7",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR de télémédecine",
    },
    XdsType {
        code: "86531-1",
        code_system: "2.16.840.1.113883.6.1",
        display: "Attestation de sortie",
    },
    XdsType {
        code: "87273-9",
        code_system: "2.16.840.1.113883.6.1",
        display: "Note de vaccination",
    },
    XdsType {
        code: "88348-8",
        code_system: "2.16.840.1.113883.6.1",
        display: "Lettre de liaison d'entrée en structure sociale ou médico-sociale",
    },
    XdsType {
        code: "89601-9",
        code_system: "2.16.840.1.113883.6.1",
        display: "Certificat médical",
    },
    XdsType {
        code: "93024-8",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR de consultation pharmaceutique",
    },
    XdsType {
        code: "96349-6",
        code_system: "2.16.840.1.113883.6.1",
        display: "Lettre d'adressage",
    },
    XdsType {
        code: "96874-3",
        code_system: "2.16.840.1.113883.6.1",
        display: "COVID-19 Attestation de vaccination",
    },
    XdsType {
        code: "96173-0",
        code_system: "2.16.840.1.113883.6.1",
        display: "Test rapide d'orientation diagnostique",
    },
    XdsType {
        code: "57055-6",
        code_system: "2.16.840.1.113883.6.1",
        display: "Synthèse antepartum",
    },
    XdsType {
        code: "57057-2",
        code_system: "2.16.840.1.113883.6.1",
        display: "Synthèse Salle de Naissance Mère",
    },
    XdsType {
        code: "57075-4",
        code_system: "2.16.840.1.113883.6.1",
        display: "Synthèse Salle de Naissance Enfant",
    },
    XdsType {
        code: "89235-6",
        code_system: "2.16.840.1.113883.6.1",
        display: "Synthèse Suites de Couches Mère",
    },
    XdsType {
        code: "78489-2",
        code_system: "2.16.840.1.113883.6.1",
        display: "Synthèse Enfant en Maternité",
    },
    XdsType {
        code: "89233-1",
        code_system: "2.16.840.1.113883.6.1",
        display: "CR de grossesse",
    },
    XdsType {
        code: "101881-1",
        code_system: "2.16.840.1.113883.6.1",
        display: "Carte d'implant",
    },
    XdsType {
        code: "E1762",
        code_system: "ASTM",
        display: "Full Document",
    },
];

/// The J07 concept of `code` (codes are unique across the value set's two systems).
pub fn lookup(code: &str) -> Option<&'static XdsType> {
    J07.iter().find(|t| t.code == code)
}
