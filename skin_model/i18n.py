"""Every string the app shows, in English and French (one table, no string in a page).

Class names come from ``vocab``; this table holds the rest.
"""

from __future__ import annotations

from skin_model import vocab

LANGUAGES = {"en": "English", "fr": "Français"}

TEXT: dict[str, dict[str, str]] = {
    # -- shared ----------------------------------------------------------------------------
    "app.title": {"en": "Skin lesion classifier", "fr": "Classification de lésions cutanées"},
    # Bilingual on purpose: whoever cannot read the current language still finds the switch.
    "app.language": {"en": "Language / Langue", "fr": "Langue / Language"},
    "app.versions": {"en": "App {app} · model {model}", "fr": "Appli {app} · modèle {model}"},
    "app.disclaimer": {
        "en": "Research and teaching demonstrator. **Not a medical device**: it gives no diagnosis "
        "and is no substitute for a dermatologist.",
        "fr": "Démonstrateur de recherche et d'enseignement. **Pas un dispositif médical** : il ne "
        "pose aucun diagnostic et ne remplace pas un dermatologue.",
    },
    "app.model_error": {
        "en": "The model could not be loaded: {error}",
        "fr": "Le modèle n'a pas pu être chargé : {error}",
    },
    "page.analyse": {"en": "Analyse", "fr": "Analyser"},
    "app.loading": {
        "en": "Loading the model (only the first visitor after a start waits for this)…",
        "fr": "Chargement du modèle (seul le premier visiteur après un démarrage l'attend)…",
    },
    "page.batch": {"en": "Batch", "fr": "Lot d'images"},
    "page.card": {"en": "Model card", "fr": "Fiche du modèle"},
    "page.about": {"en": "About", "fr": "À propos"},
    "group.malignant": {"en": "malignant", "fr": "maligne"},
    "group.premalignant": {"en": "pre-malignant / in situ", "fr": "précancéreuse / in situ"},
    "group.benign": {"en": "benign", "fr": "bénigne"},
    "meta.age": {"en": "Age (years, leave empty if unknown)", "fr": "Âge (années, vide si inconnu)"},
    "meta.sex": {"en": "Sex", "fr": "Sexe"},
    "meta.site": {"en": "Body site", "fr": "Localisation"},
    "diag.class": {"en": "Diagnosis", "fr": "Diagnostic"},
    # -- input errors (by exception class) ------------------------------------------------------
    "error.NotAnImageError": {
        "en": "This file is not an image that can be read. Use JPEG, PNG, WebP, BMP or TIFF.",
        "fr": "Ce fichier n'est pas une image lisible. Utilisez JPEG, PNG, WebP, BMP ou TIFF.",
    },
    "error.TruncatedImageError": {
        "en": "The image file is incomplete (truncated). Please send it again.",
        "fr": "Le fichier image est incomplet (tronqué). Merci de le renvoyer.",
    },
    "error.ImageTooSmallError": {
        "en": "The image is too small ({width}×{height} pixels): at least {side} pixels on each side are needed.",
        "fr": "L'image est trop petite ({width}×{height} pixels) : il faut au moins {side} pixels de côté.",
    },
    "error.ImageTooLargeError": {
        "en": "The image is too large: the limit is {limit} megapixels. Please send a smaller copy.",
        "fr": "L'image est trop grande : la limite est de {limit} mégapixels. Merci d'en envoyer une copie réduite.",
    },
    "error.InvalidAgeError": {
        "en": "The age must be a number of years between 0 and 100.",
        "fr": "L'âge doit être un nombre d'années entre 0 et 100.",
    },
    "error.UnknownSexError": {"en": "Unknown sex value.", "fr": "Valeur de sexe inconnue."},
    "error.UnknownSiteError": {"en": "Unknown body site.", "fr": "Localisation inconnue."},
    "error.metadata.empty": {"en": "The metadata file is empty.", "fr": "Le fichier de métadonnées est vide."},
    "error.metadata.not_csv": {
        "en": "The metadata file is not a CSV table (text with comma-separated columns).",
        "fr": "Le fichier de métadonnées n'est pas un tableau CSV (texte aux colonnes séparées par des virgules).",
    },
    "error.metadata.no_id": {
        "en": "The metadata CSV needs an image_id column (HAM10000 columns: image_id, age, sex, localization).",
        "fr": "Le CSV de métadonnées doit avoir une colonne image_id (colonnes HAM10000 : image_id, age, sex, localization).",
    },
    "error.metadata.repeated_id": {
        "en": "The metadata CSV gives image_id {image_id} twice.",
        "fr": "Le CSV de métadonnées donne deux fois l'image_id {image_id}.",
    },
    "error.InvalidInputError": {"en": "This input cannot be used.", "fr": "Cette entrée est inutilisable."},
    "error.TorchThreadError": {
        "en": "The model is busy with other requests: please try again in a moment. Nothing you gave is lost.",
        "fr": "Le modèle est occupé par d'autres demandes : réessayez dans un instant. Rien de ce que vous avez "
        "donné n'est perdu.",
    },
    "error.unexpected": {
        "en": "Something went wrong on the server while answering; please try again.",
        "fr": "Un problème est survenu sur le serveur pendant la réponse ; réessayez.",
    },
    "field.age": {"en": "age", "fr": "âge"},
    "field.sex": {"en": "sex", "fr": "sexe"},
    "field.site": {"en": "localization", "fr": "localisation"},
    "warning.unread_field": {
        "en": "{field} “{value}” not understood, taken as unknown",
        "fr": "{field} « {value} » non compris, pris comme inconnu",
    },
    # -- diagnose page ---------------------------------------------------------------------------
    "diag.title": {"en": "Analyse a lesion", "fr": "Analyser une lésion"},
    "diag.source": {"en": "Image source", "fr": "Source de l'image"},
    "diag.source.upload": {"en": "Upload", "fr": "Fichier"},
    "diag.source.camera": {"en": "Camera", "fr": "Caméra"},
    "diag.source.sample": {"en": "Sample gallery", "fr": "Galerie d'exemples"},
    "diag.upload": {
        "en": "Dermoscopic image (JPEG, PNG, WebP, BMP, TIFF)",
        "fr": "Image dermoscopique (JPEG, PNG, WebP, BMP, TIFF)",
    },
    "diag.camera": {"en": "Take a photo", "fr": "Prendre une photo"},
    "diag.sample": {"en": "Sample image (HAM10000 test split)", "fr": "Image d'exemple (test HAM10000)"},
    "diag.kept": {"en": "Kept from before: {name}", "fr": "Conservée : {name}"},
    "diag.remove": {"en": "Remove", "fr": "Retirer"},
    "diag.confirmed_short": {"en": "confirmed diagnosis {code}", "fr": "diagnostic confirmé {code}"},
    "diag.confirmed": {
        "en": "Confirmed diagnosis of this sample ({how}): **{code}** — {name}",
        "fr": "Diagnostic confirmé de cet exemple ({how}) : **{code}** — {name}",
    },
    "diag.sample_meta": {
        "en": "Use this sample's recorded age, sex and site",
        "fr": "Utiliser l'âge, le sexe et la localisation enregistrés",
    },
    "diag.patient": {
        "en": "What you know of the patient (optional)",
        "fr": "Ce que vous savez du patient (facultatif)",
    },
    "diag.waiting": {"en": "Give an image to get an answer.", "fr": "Donnez une image pour obtenir une réponse."},
    "diag.running": {"en": "Analysing…", "fr": "Analyse en cours…"},
    "diag.chart": {"en": "All seven diagnoses", "fr": "Les sept diagnostics"},
    "diag.cam": {"en": "What the network looked at (Grad-CAM)", "fr": "Ce que le réseau a regardé (Grad-CAM)"},
    "diag.original": {"en": "Image", "fr": "Image"},
    "diag.overlay": {"en": "Grad-CAM for {code}", "fr": "Grad-CAM pour {code}"},
    "diag.opacity": {"en": "Heatmap opacity", "fr": "Opacité de la carte"},
    "diag.cam_class": {"en": "Explain", "fr": "Expliquer"},
    "diag.cam_malignant": {
        "en": "malignant or pre-malignant (the verdict's score)",
        "fr": "maligne ou précancéreuse (le score du verdict)",
    },
    "diag.fused": {"en": "With patient info", "fr": "Avec infos patient"},
    "diag.image_only": {"en": "Image only", "fr": "Image seule"},
    "diag.no_metadata": {
        "en": "No patient information given: both columns are the image-only answer.",
        "fr": "Aucune information patient : les deux colonnes sont la réponse sur l'image seule.",
    },
    "diag.download": {"en": "Download the result (JSON)", "fr": "Télécharger le résultat (JSON)"},
    "diag.show_anyway": {"en": "Show the model's answer anyway", "fr": "Afficher quand même la réponse du modèle"},
    "diag.similar": {
        "en": "Similar confirmed cases (training images nearest in the model's feature space)",
        "fr": "Cas confirmés similaires (images d'entraînement les plus proches pour le modèle)",
    },
    "diag.similar_tap": {"en": "Open a case for its details.", "fr": "Ouvrez un cas pour ses détails."},
    "diag.similar_age": {"en": "{age} y", "fr": "{age} ans"},
    "diag.similar_sex": {"en": "Sex: {sex}.", "fr": "Sexe : {sex}."},
    "dx_type.histo": {"en": "histopathology", "fr": "histopathologie"},
    "dx_type.follow_up": {"en": "follow-up", "fr": "suivi"},
    "dx_type.consensus": {"en": "expert consensus", "fr": "consensus d'experts"},
    "dx_type.confocal": {"en": "confocal microscopy", "fr": "microscopie confocale"},
    "dx_type.isic2017": {
        "en": "histopathology or expert consensus (ISIC 2017)",
        "fr": "histopathologie ou consensus d'experts (ISIC 2017)",
    },
    "dx_type.isic2019": {
        "en": "histopathology or expert consensus (BCN20000, ISIC 2019)",
        "fr": "histopathologie ou consensus d'experts (BCN20000, ISIC 2019)",
    },
    # -- the referral verdict, shown first ----------------------------------------------------------
    "refer.borderline": {"en": "Near the line", "fr": "Proche de la limite"},
    "refer.plain.suspicious": {
        "en": "The model finds features it associates with skin cancer. Show this lesion to a dermatologist.",
        "fr": "Le modèle trouve des signes qu'il associe à un cancer de la peau. Montrez cette lésion à un "
        "dermatologue.",
    },
    "refer.plain.borderline": {
        "en": "The model's number is close to the line at which it asks for a dermatologist: it cannot tell "
        "either way. Show this lesion to a dermatologist rather than rely on this answer.",
        "fr": "Le nombre du modèle est proche de la limite à partir de laquelle il demande un dermatologue : il "
        "ne peut trancher. Montrez cette lésion à un dermatologue plutôt que de vous fier à cette réponse.",
    },
    "refer.plain.not_suspicious": {
        "en": "The model finds no features it associates with skin cancer. This rules nothing out: a lesion that "
        "changes, bleeds or worries the patient should be seen by a dermatologist.",
        "fr": "Le modèle ne trouve pas de signes qu'il associe à un cancer de la peau. Ceci n'exclut rien : une "
        "lésion qui change, saigne ou inquiète le patient doit être vue par un dermatologue.",
    },
    "refer.plain.cannot_judge": {
        "en": "This image does not look like the dermoscopic images the model learnt from, so it gives no answer. "
        "Take a dermoscopic photo of the lesion again, or show it to a dermatologist.",
        "fr": "Cette image ne ressemble pas aux images dermoscopiques que le modèle a apprises : il ne donne donc "
        "pas de réponse. Reprenez une photo dermoscopique de la lésion, ou montrez-la à un dermatologue.",
    },
    "refer.number": {
        "en": "Chance that the lesion is malignant or pre-malignant",
        "fr": "Probabilité que la lésion soit maligne ou précancéreuse",
    },
    "refer.line": {"en": "the line: {threshold}", "fr": "la limite : {threshold}"},
    "refer.details": {"en": "How this answer is decided", "fr": "Comment cette réponse est décidée"},
    "refer.details_text": {
        "en": "The number is the calibrated probability of melanoma, basal cell carcinoma or actinic keratosis / "
        "Bowen's disease together (mel + bcc + akiec), for a lesion drawn from HAM10000's mix of diagnoses. The "
        "model asks for a dermatologist from {threshold} up: the line chosen so that, on {n} lesions it had not "
        "learnt from, it flagged 90 in 100 of the malignant ones. From {low} to {high} an answer is near the line: "
        "{share} of such lesions were malignant.",
        "fr": "Le nombre est la probabilité calibrée d'un mélanome, d'un carcinome basocellulaire ou d'une "
        "kératose actinique / maladie de Bowen réunis (mel + bcc + akiec), pour une lésion tirée du mélange de "
        "diagnostics de HAM10000. Le modèle demande un dermatologue à partir de {threshold} : la limite choisie "
        "pour que, sur {n} lésions qu'il n'avait pas apprises, il signale 90 sur 100 des lésions malignes. De "
        "{low} à {high}, une réponse est proche de la limite : {share} de ces lésions étaient malignes.",
    },
    "refer.cannot_judge_details": {
        "en": "Its out-of-domain score is {score}; 97 in 100 dermoscopic images of each clinic it learnt from "
        "score {threshold} or less. It may be a photo taken without a dermoscope, another magnification or "
        "camera, or not a skin lesion at all.",
        "fr": "Son score hors domaine est de {score} ; 97 images dermoscopiques sur 100 de chaque clinique "
        "qu'il a apprise ont un score de {threshold} ou moins. Ce peut être une photo prise sans dermatoscope, un "
        "autre grossissement ou appareil, ou pas une lésion cutanée.",
    },
    "refer.evidence": {
        "en": "On clinics it learnt from, this rule flagged {sens} in 100 malignant lesions and {fp} in 100 benign "
        "ones; at {clinic}, which it never saw, {sens_u} and {fp_u}, and it could not judge {cj_u} images "
        "in 100.",
        "fr": "Dans les cliniques qu'il a apprises, cette règle a signalé {sens} lésions malignes sur 100 et "
        "{fp} bénignes sur 100 ; à {clinic}, qu'il n'a jamais vu, {sens_u} et {fp_u}, et "
        "elle n'a pas pu juger {cj_u} images sur 100.",
    },
    "refer.evidence_home": {
        "en": "On clinics it learnt from, this rule flagged {sens} in 100 malignant lesions and {fp} in 100 benign "
        "ones; on clinics it never saw it does less well.",
        "fr": "Dans les cliniques qu'il a apprises, cette règle a signalé {sens} lésions malignes sur 100 et "
        "{fp} bénignes sur 100 ; dans des cliniques qu'il n'a jamais vues, elle fait moins bien.",
    },
    "refer.conflict": {
        "en": "**Why see a dermatologist?** The most probable diagnosis is benign ({code}, {top}), yet the "
        "malignant and pre-malignant ones together reach {p}, above the line ({threshold}) at which this tool "
        "asks for a dermatologist, so as to miss few malignant lesions.",
        "fr": "**Pourquoi un dermatologue ?** Le diagnostic le plus probable est bénin ({code}, {top}), mais les "
        "diagnostics malins et précancéreux réunis atteignent {p}, au-dessus de la limite ({threshold}) à partir "
        "de laquelle cet outil demande un dermatologue, pour manquer peu de lésions malignes.",
    },
    "report.title": {
        "en": "Skin lesion analysis: research and teaching demonstrator",
        "fr": "Analyse d'une lésion cutanée : démonstrateur de recherche et d'enseignement",
    },
    "report.made": {"en": "Made {date} by model {version}.", "fr": "Fait le {date} par le modèle {version}."},
    "report.unknown": {"en": "not given", "fr": "non donné"},
    "report.no_number": {
        "en": "No probability is given: the model cannot judge this image.",
        "fr": "Aucune probabilité n'est donnée : le modèle ne peut pas juger cette image.",
    },
    "batch.reports": {
        "en": "Download a report per image (PDF, zip)",
        "fr": "Télécharger un rapport par image (PDF, zip)",
    },
    "quality.intro": {"en": "**The photo may be hard to read.**", "fr": "**La photo est peut-être difficile à lire.**"},
    "quality.blurred": {
        "en": "It looks blurred: retake it with the lesion in focus.",
        "fr": "Elle semble floue : reprenez-la avec la lésion nette.",
    },
    "quality.too_dark": {
        "en": "It looks too dark: retake it with more light.",
        "fr": "Elle semble trop sombre : reprenez-la avec plus de lumière.",
    },
    "quality.too_bright": {
        "en": "It looks overexposed: retake it with less light or without flash.",
        "fr": "Elle semble surexposée : reprenez-la avec moins de lumière ou sans flash.",
    },
    "quality.lesion_too_small": {
        "en": "The lesion looks very small or absent: come closer, with the lesion in the middle.",
        "fr": "La lésion semble très petite ou absente : rapprochez-vous, la lésion au centre.",
    },
    "quality.lesion_cut_off": {
        "en": "The lesion seems cut by the edge of the photo: retake it with the whole lesion in the middle.",
        "fr": "La lésion semble coupée par le bord de la photo : reprenez-la avec toute la lésion au centre.",
    },
    "punct.colon": {"en": ": ", "fr": " : "},
    "report.download": {"en": "Download the report (PDF)", "fr": "Télécharger le rapport (PDF)"},
    "diag.coverage": {
        "en": "Not trained on: squamous cell carcinoma; amelanotic, acral, nail or mucosal lesions; children. Its "
        "answer there means little.",
        "fr": "Pas appris : carcinome épidermoïde ; lésions achromiques, acrales, unguéales ou muqueuses ; "
        "enfants. Sa réponse y a peu de sens.",
    },
    "diag.differential": {"en": "Differential", "fr": "Diagnostic différentiel"},
    "diag.most_probable": {
        "en": "Most probable: **{label}**, {p}",
        "fr": "Le plus probable : **{label}**, {p}",
    },
    "diag.uncertain": {
        "en": "Uncertain between **{a}** ({p_a}) and **{b}** ({p_b}): the model cannot tell these two apart here.",
        "fr": "Incertain entre **{a}** ({p_a}) et **{b}** ({p_b}) : le modèle ne sait pas les départager ici.",
    },
    "diag.then": {"en": "Then: {items}.", "fr": "Ensuite : {items}."},
    "diag.anyway": {
        "en": "**Answer given anyway** for an image the model cannot judge: these numbers do not mean what they "
        "say on dermoscopy.",
        "fr": "**Réponse donnée quand même** pour une image que le modèle ne peut pas juger : ces nombres ne "
        "veulent pas dire ce qu'ils disent sur la dermoscopie.",
    },
    "diag.similarity": {"en": "similarity {s}", "fr": "similarité {s}"},
    "diag.similar_details": {
        "en": "{name}; confirmed by {how}; similarity of image features {similarity} (1: identical).",
        "fr": "{name} ; confirmation : {how} ; similarité des caractéristiques d'image {similarity} (1 : identiques).",
    },
    "refer.suspicious": {
        "en": "Suspicious: a dermatologist should see this lesion",
        "fr": "Suspecte : un dermatologue devrait voir cette lésion",
    },
    "refer.not_suspicious": {"en": "Not suspicious to this model", "fr": "Non suspecte pour ce modèle"},
    "refer.cannot_judge": {"en": "Cannot judge this image", "fr": "Impossible de juger cette image"},
    "refer.not_suspicious_note": {
        "en": "This rules nothing out: a lesion that changes, bleeds or worries the patient should be seen by a "
        "dermatologist.",
        "fr": "Ceci n'exclut rien : une lésion qui change, saigne ou inquiète le patient doit être vue par un "
        "dermatologue.",
    },
    "diag.changed": {
        "en": "What changed: the probability of a malignant or pre-malignant lesion went from {before} to {after}; "
        "suggested diagnosis: {top_before} → {top_after}; verdict {verdict}.",
        "fr": "Ce qui a changé : la probabilité d'une lésion maligne ou précancéreuse est passée de {before} à "
        "{after} ; diagnostic suggéré : {top_before} → {top_after} ; verdict {verdict}.",
    },
    "diag.verdict_same": {"en": "unchanged", "fr": "inchangé"},
    "diag.balanced_toggle": {
        "en": "Add the column before base rates",
        "fr": "Ajouter la colonne avant fréquences",
    },
    "diag.balanced_help": {
        "en": "The probabilities are calibrated to HAM10000's own mix of diagnoses (two lesions in three are "
        "nevi): their malignant share is the number the verdict reads. The extra column weighs the image's "
        "evidence as if every diagnosis were equally common beforehand: it ranks rare diagnoses higher, it is "
        "not the probability of this lesion, and the verdict never uses it.",
        "fr": "Les probabilités sont calibrées sur le mélange de diagnostics de HAM10000 (deux lésions sur trois "
        "sont des nævus) : leur part maligne est le nombre que lit le verdict. La colonne en plus pèse les indices "
        "de l'image comme si tous les diagnostics étaient également fréquents : elle place plus haut les "
        "diagnostics rares, ce n'est pas la probabilité de cette lésion, et le verdict ne l'utilise jamais.",
    },
    "diag.balanced": {"en": "Before base rates", "fr": "Avant fréquences"},
    "prior.equal": {"en": "every diagnosis equally likely", "fr": "tous les diagnostics également probables"},
    "prior.training": {
        "en": "HAM10000's own frequencies (two lesions in three are nevi)",
        "fr": "les fréquences de HAM10000 (deux lésions sur trois sont des nævus)",
    },
    "diag.prior_in_force": {
        "en": "Probabilities under the prior: {prior}.",
        "fr": "Probabilités sous l'a priori : {prior}.",
    },
    "diag.cam_unlikely": {
        "en": "The model gives {code} only {p}: this map explains a class it finds unlikely.",
        "fr": "Le modèle ne donne que {p} à {code} : cette carte explique une classe qu'il juge improbable.",
    },
    "diag.legend": {
        "en": "blue: little influence · red: most raised the score of {code}",
        "fr": "bleu : peu d'influence · rouge : a le plus augmenté le score de {code}",
    },
    # -- batch page -------------------------------------------------------------------------------
    "batch.title": {"en": "Analyse several images", "fr": "Analyser plusieurs images"},
    "batch.images": {"en": "Images", "fr": "Images"},
    "batch.metadata": {
        "en": "Optional metadata CSV (HAM10000 columns: image_id, age, sex, localization)",
        "fr": "CSV de métadonnées facultatif (colonnes HAM10000 : image_id, age, sex, localization)",
    },
    "batch.run": {"en": "Analyse {n} image(s)", "fr": "Analyser {n} image(s)"},
    "batch.progress": {"en": "Image {i} of {n}", "fr": "Image {i} sur {n}"},
    "batch.summary": {"en": "Predicted diagnoses", "fr": "Diagnostics prédits"},
    "batch.count": {"en": "Images", "fr": "Images"},
    "batch.download": {"en": "Download the table (CSV)", "fr": "Télécharger le tableau (CSV)"},
    "batch.failed": {
        "en": "{n} image(s) could not be read; see the column “{column}”.",
        "fr": "{n} image(s) illisible(s) ; voir la colonne « {column} ».",
    },
    "batch.warned": {
        "en": "{n} row(s) had metadata that was not understood and was taken as unknown; see the column “{column}”. The images were analysed.",
        "fr": "{n} ligne(s) avaient des métadonnées non comprises, prises comme inconnues ; voir la colonne « {column} ». Les images ont été analysées.",
    },
    "batch.refer": {
        "en": "{n} of the images should be seen by a dermatologist: every one the '{column}' column calls "
        "suspicious (riskiest first). Those it cannot judge are counted apart.",
        "fr": "{n} des images devraient être vues par un dermatologue : toutes celles que la colonne « {column} » "
        "dit suspectes (les plus à risque en premier). Celles qu'il ne peut pas juger sont comptées à part.",
    },
    "batch.ood": {
        "en": "{n} image(s) are unlike the dermoscopy the model learnt from (“{column}”: cannot judge): their "
        "diagnoses are not counted in the chart.",
        "fr": "{n} image(s) ne ressemblent pas à la dermoscopie que le modèle a apprise (« {column} » : impossible à "
        "juger) : leurs diagnostics ne sont pas comptés dans le graphique.",
    },
    "batch.too_many": {
        "en": "At most {limit} images per batch: you gave {n}. Remove some, or use the command line (python -m skin_model predict) for more.",
        "fr": "Au plus {limit} images par lot : vous en avez donné {n}. Retirez-en, ou utilisez la ligne de commande (python -m skin_model predict) pour davantage.",
    },
    "batch.kept": {
        "en": "Results of the {n} image(s) analysed before (their files are no longer loaded).",
        "fr": "Résultats des {n} image(s) analysées auparavant (leurs fichiers ne sont plus chargés).",
    },
    "batch.too_large": {
        "en": "These files add up to {total} MB; a batch takes up to {limit} MB. Analyse them in smaller groups.",
        "fr": "Ces fichiers font {total} Mo en tout ; un lot accepte jusqu'à {limit} Mo. Analysez-les par groupes "
        "plus petits.",
    },
    "batch.clear": {"en": "Clear the results", "fr": "Effacer les résultats"},
    "batch.none": {
        "en": "No image could be analysed, so there is no summary.",
        "fr": "Aucune image n'a pu être analysée : pas de résumé.",
    },
    "column.image_id": {"en": "image", "fr": "image"},
    "column.verdict": {"en": "verdict", "fr": "verdict"},
    "column.refer_threshold": {"en": "threshold", "fr": "seuil"},
    "column.borderline": {"en": "borderline", "fr": "limite"},
    "column.refused": {"en": "refused (see error)", "fr": "refusée (voir erreur)"},
    "refer.short.suspicious": {"en": "Suspicious", "fr": "Suspecte"},
    "refer.short.not_suspicious": {"en": "Not suspicious", "fr": "Non suspecte"},
    "refer.short.cannot_judge": {"en": "Cannot judge", "fr": "Impossible à juger"},
    "refer.short.borderline": {"en": "Near the line", "fr": "Proche de la limite"},
    "column.rank": {"en": "#", "fr": "n°"},
    "column.thumbnail": {"en": "image", "fr": "image"},
    "column.prediction": {"en": "prediction", "fr": "prédiction"},
    "column.uncertain_between": {"en": "uncertain between", "fr": "incertain entre"},
    "column.malignant_probability": {"en": "P(malignant)", "fr": "P(maligne)"},
    "column.refer": {"en": "see a dermatologist", "fr": "voir un dermatologue"},
    "column.prior": {"en": "prior", "fr": "a priori"},
    "column.ood": {"en": "ood", "fr": "hors domaine"},
    "column.ood_score": {"en": "ood score", "fr": "score hors domaine"},
    "column.warning": {"en": "warning", "fr": "avertissement"},
    "column.error": {"en": "error", "fr": "erreur"},
    "batch.empty": {
        "en": "Add images to start (at most {limit}).",
        "fr": "Ajoutez des images pour commencer (au plus {limit}).",
    },
    # -- model card page --------------------------------------------------------------------------------
    "card.title": {"en": "Model card", "fr": "Fiche du modèle"},
    "card.summary_cv": {
        "en": "{members}: one per fold of a 5-fold cross-validation, averaged; version {version}, exported on "
        "{date}. Each answer averages {views} views of the image: as given, and flipped. Its probabilities are calibrated to "
        "HAM10000's frequencies: the referral verdict reads their malignant share, and the suggested diagnosis "
        "is their most probable class. The view before base rates (every diagnosis equally likely) is the "
        "balanced decision, shown on request; the recall per diagnosis and the confusion matrix below are that "
        "view's, on which the training epoch was chosen.",
        "fr": "{members} : un par pli d'une validation croisée à 5 plis, moyennés ; version {version}, exportée le "
        "{date}. Chaque réponse moyenne {views} vues de l'image : telle quelle, et retournée. Ses probabilités sont calibrées sur "
        "les fréquences de HAM10000 : le verdict d'orientation lit leur part maligne, et le diagnostic suggéré "
        "est leur classe la plus probable. La vue avant fréquences (tous les diagnostics également probables) "
        "est la décision équilibrée, montrée sur demande ; le rappel par diagnostic et la matrice de confusion "
        "ci-dessous sont les siens, et l'époque d'entraînement a été choisie sur elle.",
    },
    "card.referral": {
        "en": "Should a dermatologist see it? The referral rule",
        "fr": "Faut-il montrer la lésion à un dermatologue ? La règle d'orientation",
    },
    "card.referral_text": {
        "en": "The app leads with this rule: a lesion is called suspicious when its probability of being malignant "
        "or pre-malignant (mel + bcc + akiec, under HAM10000's frequencies) is at least **{threshold}**. That "
        "threshold is the highest one that still flagged {target} of the malignant and pre-malignant lesions "
        "{chosen_on}; the test split was scored once, with it fixed. An image out of domain is never "
        "called 'not suspicious'.",
        "fr": "L'appli commence par cette règle : une lésion est dite suspecte quand sa probabilité d'être maligne ou "
        "précancéreuse (mel + bcc + akiec, aux fréquences de HAM10000) atteint **{threshold}**. Ce seuil est le "
        "plus haut qui signalait encore {target} des lésions malignes et précancéreuses {chosen_on} ; la "
        "partition de test a été notée une fois, seuil fixé. Une image hors domaine n'est jamais dite "
        "« non suspecte ».",
    },
    "card.sensitivity": {"en": "Sensitivity (malignant flagged)", "fr": "Sensibilité (malignes signalées)"},
    "card.specificity": {"en": "Specificity (benign cleared)", "fr": "Spécificité (bénignes écartées)"},
    "card.mel_sensitivity": {"en": "Melanomas referred by the verdict", "fr": "Mélanomes orientés par le verdict"},
    "card.roc_x": {
        "en": "Benign lesions flagged (1 − specificity)",
        "fr": "Lésions bénignes signalées (1 − spécificité)",
    },
    "card.roc_y": {"en": "Malignant lesions flagged (sensitivity)", "fr": "Lésions malignes signalées (sensibilité)"},
    "card.roc_split": {"en": "{split}, AUC {auc}", "fr": "{split}, AUC {auc}"},
    "card.operating_point": {"en": "{split}: the rule", "fr": "{split} : la règle"},
    "card.referral_confusion": {
        "en": "Referral against the truth (test split)",
        "fr": "Orientation face à la vérité (partition de test)",
    },
    "card.referred": {"en": "referred", "fr": "orientée"},
    "card.not_referred": {"en": "not referred", "fr": "non orientée"},
    "card.truth_malignant": {"en": "malignant or pre-malignant", "fr": "maligne ou précancéreuse"},
    "card.truth_benign": {"en": "benign", "fr": "bénigne"},
    "card.anchors": {
        "en": "Beside published operating points (other data, other tasks: a guide, not a contest)",
        "fr": "À côté de points de fonctionnement publiés (autres données, autres tâches : un repère, pas un concours)",
    },
    "card.anchor_who": {"en": "Who", "fr": "Qui"},
    "card.anchor.dermatologists": {
        "en": "Dermatologists, dermoscopic images (ISIC 2016 reader study): melanoma",
        "fr": "Dermatologues, images dermoscopiques (étude de lecteurs ISIC 2016) : mélanome",
    },
    "card.anchor.skinvision": {
        "en": "SkinVision, CE-marked app: malignant or pre-malignant",
        "fr": "SkinVision, appli marquée CE : maligne ou précancéreuse",
    },
    "card.anchor_source": {"en": "Source", "fr": "Source"},
    "card.this_model": {
        "en": "This model ({split}): malignant or pre-malignant",
        "fr": "Ce modèle ({split}) : maligne ou précancéreuse",
    },
    "card.test": {"en": "test", "fr": "test"},
    "card.chosen_on_oof": {
        "en": "among the out-of-fold predictions (each HAM10000 training lesion scored by the fold model that "
        "never saw it)",
        "fr": "parmi les prédictions hors pli (chaque lésion d'entraînement de HAM10000 notée par le modèle de pli "
        "qui ne l'a jamais vue)",
    },
    "card.mel_recall": {
        "en": "Melanomas named first (7-class answer)",
        "fr": "Mélanomes nommés en premier (réponse à 7 classes)",
    },
    "card.bal_acc": {"en": "Balanced accuracy", "fr": "Exactitude équilibrée"},
    "card.auc": {"en": "Macro ROC AUC", "fr": "AUC ROC macro"},
    "card.ece": {"en": "Calibration error (ECE)", "fr": "Erreur de calibration (ECE)"},
    "card.recall": {"en": "Recall per diagnosis, before base rates", "fr": "Rappel par diagnostic, avant fréquences"},
    "card.confusion": {
        "en": "Confusion matrix before base rates (rows: truth, columns: prediction)",
        "fr": "Matrice de confusion avant fréquences (lignes : vérité, colonnes : prédiction)",
    },
    "card.truth": {"en": "Truth", "fr": "Vérité"},
    "card.predicted": {"en": "Prediction", "fr": "Prédiction"},
    "card.reliability": {"en": "Reliability diagram", "fr": "Diagramme de fiabilité"},
    "card.confidence": {"en": "Confidence", "fr": "Confiance"},
    "card.observed": {"en": "Observed accuracy", "fr": "Exactitude observée"},
    "card.ideal": {"en": "Perfect calibration", "fr": "Calibration parfaite"},
    "card.ood": {"en": "Knowing when not to answer", "fr": "Savoir ne pas répondre"},
    "card.ood_cv_text": {
        "en": "An image unlike the dermoscopy the model learnt from gets “cannot judge this image”, never a verdict. "
        "The check has also learnt from {n} real images that are not dermoscopy; its threshold lets at least "
        "{rate} of each source's dermoscopy pass; of the source it is strictest with, {source}, {lowest} pass.",
        "fr": "Une image qui ne ressemble pas à la dermoscopie apprise reçoit « impossible de juger cette image », "
        "jamais un verdict. Le contrôle a aussi appris de {n} vraies images qui ne sont pas de la dermoscopie ; son "
        "seuil laisse passer au moins {rate} de la dermoscopie de chaque source ; de la source avec laquelle il est "
        "le plus strict, {source}, {lowest} passent.",
    },
    "card.uncertain": {
        "en": "“Uncertain between A and B” when the top two probabilities differ by less than {gap}: the widest "
        "such band in which the top answer was right no more often than a coin toss on validation. That was {share} "
        "of validation answers, right {right} of the time; the other answers were right {rest} of the time.",
        "fr": "« Incertain entre A et B » quand les deux premières probabilités diffèrent de moins de {gap} : la plus "
        "large bande où la première réponse n'était pas plus souvent juste qu'à pile ou face en validation. Cela "
        "concernait {share} des réponses de validation, justes {right} du temps ; les autres étaient justes {rest} du temps.",
    },
    "card.data": {"en": "Training data", "fr": "Données d'entraînement"},
    "card.split": {"en": "Split", "fr": "Partition"},
    "card.data_text": {
        "en": "Dermoscopy from {datasets}, taken at {clinics}.",
        "fr": "Dermoscopie de {datasets}, prise dans {clinics}.",
    },
    "word.and": {"en": "and", "fr": "et"},
    "card.split_text": {
        "en": "no lesion in two places. {parts} The test split's classes are never read by the export.",
        "fr": "aucune lésion à deux endroits. {parts} L'export ne lit jamais les classes de la partition de test.",
    },
    # Per dataset (the names the card's data section uses): where its images come from, its role
    # in training, and how to cite it.
    "data.HAM10000": {
        "en": "HAM10000 (two Austrian clinics and one Australian practice)",
        "fr": "HAM10000 (deux cliniques autrichiennes et un cabinet australien)",
    },
    "data.ISIC 2017": {"en": "ISIC 2017 (mostly one US centre)", "fr": "ISIC 2017 (surtout un centre américain)"},
    "data.BCN20000": {
        "en": "BCN20000 (Hospital Clínic de Barcelona, Spain)",
        "fr": "BCN20000 (Hospital Clínic de Barcelone, Espagne)",
    },
    # The clinics the sources come from (``SOURCE_CLINIC``), as a list in a sentence.
    "clinic.vienna": {
        "en": "the Medical University of Vienna (Austria)",
        "fr": "l'Université de médecine de Vienne (Autriche)",
    },
    "clinic.queensland": {
        "en": "a skin cancer practice in Queensland (Australia)",
        "fr": "un cabinet de cancérologie cutanée du Queensland (Australie)",
    },
    "clinic.isic": {
        "en": "the ISIC Archive (mostly Memorial Sloan Kettering in New York)",
        "fr": "l'ISIC Archive (surtout Memorial Sloan Kettering à New York)",
    },
    "clinic.barcelona": {
        "en": "the Hospital Clínic de Barcelona (Spain)",
        "fr": "l'Hospital Clínic de Barcelone (Espagne)",
    },
    "split.HAM10000": {
        "en": "HAM10000: a fixed test split and five class-stratified folds of the rest (a lesion file, "
        "splits/ham10000_lesions.csv); its out-of-fold images calibrate the model and set its thresholds.",
        "fr": "HAM10000 : une partition de test fixe et cinq plis stratifiés par classe pour le reste (un fichier "
        "de lésions, splits/ham10000_lesions.csv) ; ses images hors pli calibrent le modèle et fixent ses seuils.",
    },
    "split.ISIC 2017": {
        "en": "ISIC 2017: its training part in every fold's training, its validation part checked, never trained on.",
        "fr": "ISIC 2017 : sa partie d'entraînement dans l'entraînement de chaque pli, sa partie de validation "
        "vérifiée, jamais apprise.",
    },
    "split.BCN20000": {
        "en": "BCN20000: every lesion in one of the five folds by a hash of its id, no test part.",
        "fr": "BCN20000 : chaque lésion dans l'un des cinq plis selon un hachage de son identifiant, sans partie de test.",
    },
    "cite.HAM10000": {
        "en": "HAM10000 (Tschandl et al. 2018, CC BY-NC-SA 4.0)",
        "fr": "HAM10000 (Tschandl et al. 2018, CC BY-NC-SA 4.0)",
    },
    "cite.ISIC 2017": {
        "en": "ISIC 2017 (Codella et al. 2018; ISIC Archive images, CC BY-NC or CC-0)",
        "fr": "ISIC 2017 (Codella et al. 2018 ; images de l'ISIC Archive, CC BY-NC ou CC-0)",
    },
    "cite.BCN20000": {
        "en": "BCN20000 (Combalia et al. 2019, CC BY-NC 4.0)",
        "fr": "BCN20000 (Combalia et al. 2019, CC BY-NC 4.0)",
    },
    "card.part.folds": {"en": "folds (training and out-of-fold)", "fr": "plis (entraînement et hors pli)"},
    "card.part.every_fold": {"en": "in every fold's training", "fr": "dans l'entraînement de chaque pli"},
    "card.part.check": {"en": "check (never trained on)", "fr": "vérification (jamais apprise)"},
    "card.part.test": {"en": "test (scored once)", "fr": "test (évalué une fois)"},
    "card.lesions": {"en": "lesions", "fr": "lésions"},
    "licence.HAM10000": {"en": "HAM10000: CC BY-NC-SA 4.0", "fr": "HAM10000 : CC BY-NC-SA 4.0"},
    "licence.ISIC 2017": {
        "en": "ISIC 2017: CC BY-NC or CC-0, per image",
        "fr": "ISIC 2017 : CC BY-NC ou CC-0, selon l'image",
    },
    "licence.BCN20000": {"en": "BCN20000: CC BY-NC 4.0", "fr": "BCN20000 : CC BY-NC 4.0"},
    "licence.terms": {
        "en": "— non-commercial use only, with attribution.",
        "fr": "— usage non commercial uniquement, avec attribution.",
    },
    "card.sources": {
        "en": "Seen in training: dermoscopy from {sources}. Images from other cameras and clinics may be answered "
        "less well.",
        "fr": "Vues à l'entraînement : dermoscopies de {sources}. Les images d'autres appareils et cliniques "
        "peuvent être moins bien traitées.",
    },
    "card.evaluation": {
        "en": "How it does: out-of-fold (every choice was made there) and the test split (scored once)",
        "fr": "Ses résultats : hors pli (tous les choix y ont été faits) et partition de test (notée une fois)",
    },
    "card.oof": {"en": "out-of-fold", "fr": "hors pli"},
    "card.by_source": {
        "en": "By source: HAM10000's test lesions per clinic, ISIC 2017's check part (never trained on), and each "
        "source's out-of-fold images (each scored by the fold model that never saw it)",
        "fr": "Par source : lésions de test de HAM10000 par clinique, partie de contrôle d'ISIC 2017 (jamais apprise), "
        "et images hors pli de chaque source (chacune notée par le modèle de pli qui ne l'a jamais vue)",
    },
    "card.held_out": {
        "en": "On clinics it never saw (held-out sources)",
        "fr": "Sur des cliniques jamais vues (sources mises de côté)",
    },
    "card.held_out_text": {
        "en": "The best guide to a clinic this model has never seen: for each source, a model of the same design "
        "trained without it and scored on all of its images (a smaller stand-in: {arch} at {width}×{height}, "
        "{epochs} epochs, fold {fold}'s training images). Mean melanoma AUC {mean}. The shipped model was "
        "trained on the clinics named above, and has never seen the others.",
        "fr": "Le meilleur indice de ce que vaut ce modèle dans une clinique qu'il n'a jamais vue : pour chaque source, "
        "un modèle de même conception entraîné sans elle et évalué sur toutes ses images (un modèle réduit, à la "
        "place du modèle livré : {arch} en {width}×{height}, {epochs} époques, images d'entraînement du pli {fold}). "
        "AUC mélanome moyenne : {mean}. Le modèle livré a été entraîné sur les images des cliniques nommées "
        "plus haut et n'a jamais vu les autres.",
    },
    "card.melanomas": {"en": "Melanomas", "fr": "Mélanomes"},
    "card.malignant_auc": {"en": "P(malignant) AUC", "fr": "AUC P(maligne)"},
    "card.mean": {"en": "mean", "fr": "moyenne"},
    "card.source": {"en": "Source", "fr": "Source"},
    "card.images": {"en": "Images", "fr": "Images"},
    "card.mel_auc": {"en": "Melanoma AUC", "fr": "AUC mélanome"},
    "card.ood_flagged": {"en": "Flagged out of domain", "fr": "Signalées hors domaine"},
    "card.calibration_line": {
        "en": "Under HAM10000's frequencies (the training prior) on test: ECE {ece}; mean P(malignant) {p} "
        "against a malignant share of {share}.",
        "fr": "Aux fréquences de HAM10000 (a priori d'entraînement) sur le test : ECE {ece} ; P(maligne) moyenne "
        "{p} pour une part de lésions malignes de {share}.",
    },
    # A figure beside the one shown large: "out-of-fold: 0.912".
    "card.beside": {"en": "{split}: {value}", "fr": "{split} : {value}"},
    "card.scroll_hint": {
        "en": "Swipe the table sideways for more columns.",
        "fr": "Faites glisser le tableau sur le côté pour voir les autres colonnes.",
    },
    # The categories of real images that are not dermoscopy (the folders of not_dermoscopy).
    "card.category.clinical_skin": {"en": "ordinary photos of skin", "fr": "photos de peau ordinaires"},
    "card.category.documents": {"en": "documents", "fr": "documents"},
    "card.category.medical_other": {"en": "other medical images", "fr": "autres images médicales"},
    "card.category.natural": {"en": "everyday photos", "fr": "photos du quotidien"},
    "card.category.all": {"en": "all together", "fr": "toutes ensemble"},
    "card.category_share": {"en": "{name} {share} of {n}", "fr": "{name} {share} sur {n}"},
    "card.beyond": {"en": "Away from its training conditions", "fr": "Hors de ses conditions d'entraînement"},
    "card.unseen_text": {
        "en": "**On a clinic it never saw: {clinic}** ({lesions} lesions, one image each). It could not judge "
        "{cannot_judge} of them. On the {judged} it judged, the referral rule flagged {sensitivity} of the "
        "malignant and pre-malignant lesions and {melanomas} of the melanomas, and cleared {specificity} of the "
        "benign ones; melanoma AUC {auc}, balanced accuracy {ba}. Compare with the clinics it learnt from, above.",
        "fr": "**Dans une clinique qu'il n'a jamais vue : {clinic}** ({lesions} lésions, une image chacune). Il "
        "n'a pas pu en juger {cannot_judge}. Sur les {judged} qu'il a jugées, la règle d'orientation a signalé "
        "{sensitivity} des lésions malignes et précancéreuses et {melanomas} des mélanomes, et écarté "
        "{specificity} des bénignes ; AUC mélanome {auc}, exactitude équilibrée {ba}. À comparer aux cliniques "
        "qu'il a apprises, plus haut.",
    },
    "card.uploads_text": {
        "en": "**Full-size photos.** {images} original photographs, as a user uploads them, against the "
        "{width}×{height} copies the model learnt from, with the same patient information: the verdict was the "
        "same for {verdicts} of them and the suggested diagnosis for {diagnoses}; the probability of a malignant "
        "or pre-malignant lesion moved on average by {mean} (at most {max}) percentage points. Flagged out of "
        "domain: {ood_original} of the originals, {ood_copy} of the copies. These lesions are in the training "
        "folds: this tests how an image is brought to size, not how often the answer is right.",
        "fr": "**Photos en taille réelle.** {images} photographies originales, telles qu'un utilisateur les "
        "envoie, face aux copies en {width}×{height} que le modèle a apprises, avec les mêmes informations "
        "patient : le verdict était le même pour {verdicts} d'entre elles et le diagnostic suggéré pour "
        "{diagnoses} ; la probabilité d'une lésion maligne ou précancéreuse a varié en moyenne de {mean} (au plus "
        "{max}), en points de pourcentage. Signalées hors domaine : {ood_original} des originales, "
        "{ood_copy} des copies. Ces lésions sont dans les plis d'entraînement : c'est un test de la mise à la "
        "taille de l'image, pas de la justesse de la réponse.",
    },
    "card.not_dermoscopy": {
        "en": "Real images that are not dermoscopy (the half kept aside, never trained on), flagged out of "
        "domain: {summary}.",
        "fr": "Vraies images qui ne sont pas de la dermoscopie (la moitié mise de côté, jamais apprise), signalées "
        "hors domaine : {summary}.",
    },
    "card.no_metrics": {
        "en": "This model card has no test metrics yet.",
        "fr": "Cette fiche n'a pas encore de métriques de test.",
    },
    "card.use": {"en": "Intended use and limitations", "fr": "Usage prévu et limites"},
    "card.limitations": {
        "en": "- Trained on {datasets}: dermoscopic images of mostly pigmented lesions, mostly fair skin. On dermoscopy from clinics it has "
        "never seen, it misses more melanomas than on these (see the documentation's held-out sources).\n"
        "- Seven classes only: any other lesion (e.g. squamous cell carcinoma) is forced into one of them.\n"
        "- Low input resolution (160×120 px); clinical (non-dermoscopic) photos are out of distribution.\n"
        "- The out-of-domain check refuses most images that are not dermoscopy, but about 4 in 10 ordinary-camera "
        "photos of skin still pass it and get an answer they should not.\n"
        "- Calibrated to HAM10000's frequencies; on other images probabilities may be over-confident.",
        "fr": "- Entraîné sur {datasets} : images dermoscopiques de lésions surtout pigmentées, surtout sur peau claire. Sur la "
        "dermoscopie de cliniques qu'il n'a jamais vues, il manque plus de mélanomes que sur celles-ci (voir la "
        "documentation, sources tenues à l'écart).\n"
        "- Sept classes seulement : toute autre lésion (p. ex. carcinome épidermoïde) est rangée dans l'une d'elles.\n"
        "- Faible résolution d'entrée (160×120 px) ; les photos cliniques (non dermoscopiques) sont hors distribution.\n"
        "- Le contrôle hors domaine refuse la plupart des images qui ne sont pas de la dermoscopie, mais environ 4 "
        "photos de peau sur 10 prises avec un appareil ordinaire le passent encore et reçoivent une réponse qu'elles "
        "ne devraient pas recevoir.\n"
        "- Calibré sur les fréquences de HAM10000 ; sur d'autres images, les probabilités peuvent être trop confiantes.",
    },
    "card.licence": {"en": "Licence and citation", "fr": "Licence et citation"},
    # -- about page ----------------------------------------------------------------------------------------
    "about.title": {"en": "About", "fr": "À propos"},
    "about.glossary": {"en": "The seven diagnoses", "fr": "Les sept diagnostics"},
    "about.answer": {"en": "Reading the answer", "fr": "Lire la réponse"},
    "about.answer.text": {
        "en": "- **The verdict** answers one question: should a dermatologist see this lesion? It reads one "
        "number, the probability that the lesion is malignant or pre-malignant (melanoma + basal cell carcinoma "
        "+ actinic keratosis / Bowen's), against a **threshold**.\n"
        "- **The threshold** was chosen on lesions the model had not been trained on (out of fold), as the "
        "highest that still flagged 90% of their malignant and pre-malignant lesions: a missed melanoma costs "
        "more than an extra visit. So many benign lesions are flagged too, and *not suspicious* rules nothing out.\n"
        "- **Borderline** means the number is among the 10% of those lesions' scores nearest the threshold: "
        "the verdict could have gone either way.\n"
        "- **Calibrated** means that of the lesions given 30%, about 30 in 100 had that diagnosis, among "
        "lesions like the training images (HAM10000's clinics, with their mix of diagnoses: two in three are "
        "nevi). The seven probabilities add up to 100%, and the malignant ones to the verdict's number.\n"
        "- **Base rates.** A probability depends on how common each diagnosis is before the image is seen. "
        "The optional column *before base rates* weighs the image's evidence as if every diagnosis were equally "
        "common: it ranks rare diagnoses higher, is not the probability of this lesion, and the verdict never "
        "uses it.\n"
        "- **The suggested diagnosis** is the most probable diagnosis: the top of the probabilities shown, under "
        "HAM10000's frequencies. Nevi are so common there that a nevus is often the most probable even when the "
        "image's evidence leans to a rarer diagnosis. The column *before base rates* is the balanced decision, "
        "on request: its top names the rare diagnoses, melanoma among them, more often, rightly and wrongly.\n"
        "- **Cannot judge** means the image is unlike the dermoscopy the model learnt from (another camera, no "
        "dermoscope, not a lesion): its numbers would not mean what they say there.",
        "fr": "- **Le verdict** répond à une question : un dermatologue devrait-il voir cette lésion ? Il lit un "
        "nombre, la probabilité que la lésion soit maligne ou précancéreuse (mélanome + carcinome basocellulaire "
        "+ kératose actinique / maladie de Bowen), face à un **seuil**.\n"
        "- **Le seuil** a été choisi sur des lésions que le modèle n'avait pas apprises (hors pli), comme le plus "
        "haut qui signalait encore 90 % de leurs lésions malignes ou précancéreuses : manquer un mélanome coûte "
        "plus qu'une consultation de trop. Beaucoup de lésions bénignes sont donc signalées aussi, et *non "
        "suspecte* n'exclut rien.\n"
        "- **À la limite** signifie que le nombre est parmi les 10 % des scores de ces lésions les plus proches "
        "du seuil : le verdict aurait pu basculer.\n"
        "- **Calibrée** signifie que sur les lésions auxquelles il donne 30 %, environ 30 sur 100 avaient ce "
        "diagnostic, parmi des lésions comme celles de l'entraînement (les cliniques de HAM10000, avec leur "
        "mélange de diagnostics : deux sur trois sont des nævus). Les sept probabilités font 100 %, et les "
        "malignes le nombre du verdict.\n"
        "- **Fréquences de base.** Une probabilité dépend de la fréquence de chaque diagnostic avant de voir "
        "l'image. La colonne facultative *avant fréquences* pèse les indices de l'image comme si tous les "
        "diagnostics étaient également fréquents : elle place plus haut les diagnostics rares, ce n'est pas la "
        "probabilité de cette lésion, et le verdict ne l'utilise jamais.\n"
        "- **Le diagnostic suggéré** est le diagnostic le plus probable : le premier des probabilités affichées, "
        "aux fréquences de HAM10000. Les nævus y sont si fréquents qu'un nævus est souvent le plus probable même "
        "quand les indices de l'image penchent vers un diagnostic plus rare. La colonne *avant fréquences* est la "
        "décision équilibrée, sur demande : son premier nomme plus souvent les diagnostics rares, dont le "
        "mélanome, à tort comme à raison.\n"
        "- **Impossible de juger** signifie que l'image ne ressemble pas à la dermoscopie que le modèle a apprise "
        "(autre appareil, pas de dermatoscope, pas une lésion) : ses nombres n'y voudraient pas dire ce qu'ils "
        "disent.",
    },
    "about.class.akiec": {
        "en": "Rough, scaly patches from years of sun; a small share become squamous cell carcinoma. Bowen's disease is a carcinoma confined to the top layer of skin.",
        "fr": "Plaques rugueuses et squameuses dues au soleil ; une petite part évolue en carcinome épidermoïde. La maladie de Bowen est un carcinome limité à la couche superficielle de la peau.",
    },
    "about.class.bcc": {
        "en": "The most common skin cancer. It grows slowly and rarely spreads, but it destroys tissue locally and needs treatment.",
        "fr": "Le cancer de la peau le plus fréquent. Il croît lentement et métastase rarement, mais détruit les tissus localement et doit être traité.",
    },
    "about.class.bkl": {
        "en": "Harmless growths such as seborrhoeic keratoses, solar lentigines and lichen-planus-like keratoses; they can mimic melanoma.",
        "fr": "Lésions bénignes comme les kératoses séborrhéiques, lentigos solaires et kératoses lichénoïdes ; elles peuvent imiter un mélanome.",
    },
    "about.class.df": {
        "en": "A firm, benign nodule of the skin, often on the legs, sometimes after a small injury.",
        "fr": "Nodule cutané ferme et bénin, souvent sur les jambes, parfois après une petite blessure.",
    },
    "about.class.mel": {
        "en": "A cancer of pigment cells. It can spread early, so it must be recognised and removed early.",
        "fr": "Cancer des cellules pigmentaires. Il peut métastaser tôt : il faut le reconnaître et l'enlever tôt.",
    },
    "about.class.nv": {
        "en": "A common mole: a benign cluster of pigment cells. Most lesions in HAM10000 are nevi.",
        "fr": "Grain de beauté : amas bénin de cellules pigmentaires. La plupart des lésions de HAM10000 sont des nævus.",
    },
    "about.class.vasc": {
        "en": "Benign lesions of blood vessels, such as cherry angiomas, angiokeratomas and pyogenic granulomas.",
        "fr": "Lésions bénignes des vaisseaux sanguins : angiomes rubis, angiokératomes, granulomes pyogéniques.",
    },
    "about.gradcam": {"en": "Reading a Grad-CAM", "fr": "Lire une carte Grad-CAM"},
    "about.gradcam.text": {
        "en": "Grad-CAM colours the regions whose features most raised the score of the chosen class (red: most, blue: least). "
        "This app computes it as LayerCAM, the variant that weighs each place by its own gradient, at a block "
        "near the network's end (its maps stay on the lesion more often), so it is coarse: a blob, not an outline.\n\n"
        "Pitfalls: a heatmap shows where the network looked, not why, and not whether it was right. "
        "Hot spots on rulers, hairs, ink marks or the dark corners of the dermoscope reveal shortcuts, not medicine. "
        "The map of a class with a tiny probability explains little.",
        "fr": "Grad-CAM colore les régions dont les caractéristiques ont le plus augmenté le score de la classe choisie (rouge : le plus, bleu : le moins). "
        "Cette application la calcule en LayerCAM, la variante qui pondère chaque endroit par son propre gradient, "
        "à un bloc proche de la fin du réseau (ses cartes restent plus souvent sur la lésion) : elle est grossière, "
        "une tache et non un contour.\n\n"
        "Pièges : la carte montre où le réseau a regardé, pas pourquoi, ni s'il a raison. "
        "Des zones chaudes sur une règle, des poils, de l'encre ou les coins sombres du dermoscope révèlent des raccourcis, pas de la médecine. "
        "La carte d'une classe très improbable explique peu.",
    },
    "about.api": {"en": "Asking from another program", "fr": "Interroger depuis un autre programme"},
    "about.api.text": {
        "en": "The running app answers programs too, at `/api/v1/predict` (one image as multipart/form-data, with "
        "optional `age`, `sex`, `site` and `prior`), with the same answer as this page, verdict first. "
        "`/api/v1/openapi.json` describes it; the README has examples and the error codes.",
        "fr": "L'application en marche répond aussi aux programmes, à `/api/v1/predict` (une image en "
        "multipart/form-data, avec `age`, `sex`, `site` et `prior` facultatifs), avec la même réponse que cette page, "
        "verdict d'abord. `/api/v1/openapi.json` la décrit ; le README donne des exemples et les codes d'erreur.",
    },
    "about.language": {"en": "Language", "fr": "Langue"},
    "about.language.text": {
        "en": "The app speaks English and French; the choice is kept in the page's address (`?lang=fr`), so a "
        "reload or a shared link keeps it. A few words belong to Streamlit itself and stay in English in both: "
        "the file uploader's **Upload** button and its **20MB per file** limit, and **Choose an option** in "
        "empty selectors.",
        "fr": "L'application parle français et anglais ; le choix est gardé dans l'adresse de la page (`?lang=fr`), "
        "si bien qu'un rechargement ou un lien partagé le conserve. Quelques mots appartiennent à Streamlit "
        "lui-même et restent en anglais : le bouton **Upload** (déposer un fichier) et la limite **20MB per file** "
        "(20 Mo par fichier) du dépôt de fichiers, et **Choose an option** (choisir une option) dans les listes vides.",
    },
    "about.data": {"en": "Data and licence", "fr": "Données et licence"},
    "about.data.text": {
        "en": "Trained on {datasets}: non-commercial use, with attribution. The model weights, the similar "
        "cases' thumbnails and the sample images carry the same conditions.",
        "fr": "Entraîné sur {datasets} : usage non commercial, avec attribution. Les poids du modèle, les "
        "vignettes des cas similaires et les images d'exemple sont soumis aux mêmes conditions.",
    },
}


# Metadata values as the app shows them, from the vocabulary's own names.
TEXT |= {f"sex.{value}": {"en": en, "fr": fr} for value, (en, fr) in vocab.SEX_NAMES.items()}
TEXT |= {f"site.{value}": {"en": en, "fr": fr} for value, (en, fr) in vocab.SITE_NAMES.items()}


# The card's source names (HAM10000's collections, the other datasets) -> their clinic's key above.
SOURCE_CLINIC = {
    "vidir_modern": "vienna",
    "vidir_molemax": "vienna",
    "vienna_dias": "vienna",
    "rosendahl": "queensland",
    "isic2017": "isic",
    "bcn20000": "barcelona",
}


def t(key: str, lang: str = "en", **values) -> str:
    """The text of ``key`` in ``lang`` (English if the language lacks it), formatted."""
    entry = TEXT[key]
    text = entry.get(lang) or entry["en"]
    return text.format(**values) if values else text


def percent(p: float, lang: str = "en") -> str:
    """A probability as a percentage with one decimal, in the language's own way ("59.0%", "59,0 %"),
    never rounded to a false certainty: ">99.9%" and "<0.1%" unless it is exactly 1 or 0."""
    if 0.999 < p < 1.0:
        return ">" + _percent(0.999, lang)
    if 0.0 < p < 0.0005:
        return "<" + _percent(0.001, lang)
    return _percent(p, lang)


def _percent(p: float, lang: str) -> str:
    from decimal import ROUND_HALF_UP, Decimal

    from babel import Locale
    from babel.numbers import format_percent

    pattern = Locale.parse(lang).percent_formats[None].pattern.replace("#,##0", "#,##0.0")
    # Rounded half up, as written (0.05% -> 0.1%), before Babel (which would round half to even).
    exact = Decimal(repr(p * 100)).quantize(Decimal("0.1"), ROUND_HALF_UP) / 100
    # French typography: a narrow no-break space before % (CLDR gives a full-width one).
    return format_percent(exact, pattern, locale=lang).replace("\u00a0%", "\u202f%")


def number(x: float, lang: str = "en", digits: int = 2) -> str:
    """A number in the language's own way: "1.41" / "1,41", "7,284" / "7 284" (Babel, one formatter)."""
    from babel.numbers import format_decimal

    return format_decimal(x, "#,##0" + ("." + "0" * digits if digits else ""), locale=lang)


def per_hundred(share: float) -> str:
    """A share as a whole count out of 100 ("23"): the same in every language."""
    return str(round(100 * share))


def class_label(code: str, lang: str = "en") -> str:
    return f"{code} — {vocab.BY_CODE[code].name(lang)}"


def error_text(err: Exception, lang: str = "en") -> str:
    """A plain-language message for a refused input, in the chosen language: the text of the
    error's key (or of its nearest class that has one), filled in with its parameters."""
    params = getattr(err, "params", {})
    keys = [f"error.{getattr(err, 'key', '')}"] + [f"error.{cls.__name__}" for cls in type(err).__mro__]
    for key in keys:
        if key in TEXT:
            try:
                return t(key, lang, **params)
            except KeyError:  # raised without the numbers this text needs: its class's text
                continue
    return t("error.InvalidInputError", lang)


def unread_field_text(err, lang: str = "en") -> str:
    """The batch warning for a metadata field taken as unknown (``inputs.MetadataError``)."""
    return t("warning.unread_field", lang, field=t(f"field.{err.field}", lang), value=err.value)
