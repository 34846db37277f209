// Validates FHIR R4 (4.0.1) JSON resources with HAPI FHIR's instance validator: the base
// StructureDefinitions (cardinalities, types, unknown elements), the FHIRPath invariants
// (dom-*, ref-1, ...), required bindings against the R4 ValueSets, UCUM, mime types and
// languages. Offline: everything comes from the jars on the class path.
//
// Usage: java -cp "LIB/*:CLASSES" Validate FILE|DIR...   (DIR: every *.json in it)
// Prints every issue (file, severity, location, message); exit 0 when no file has an error
// or fatal issue, 1 when one does, 2 on a usage or I/O problem.
//
// One JVM validates every file: loading the R4 definitions costs seconds, one resource
// costs milliseconds.

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.ResultSeverityEnum;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;

public class Validate {
  public static void main(String[] args) throws IOException {
    if (args.length == 0) {
      System.err.println("usage: Validate FILE|DIR...");
      System.exit(2);
    }
    List<Path> files = new ArrayList<>();
    for (String a : args) {
      Path p = Path.of(a);
      if (Files.isDirectory(p)) {
        try (Stream<Path> s = Files.list(p)) {
          s.filter(f -> f.toString().endsWith(".json")).sorted().forEach(files::add);
        }
      } else if (Files.isRegularFile(p)) {
        files.add(p);
      } else {
        System.err.println("no such file or directory: " + a);
        System.exit(2);
      }
    }
    if (files.isEmpty()) {
      // An empty run proves nothing: refuse it rather than report success.
      System.err.println("no .json file to validate");
      System.exit(2);
    }

    FhirContext ctx = FhirContext.forR4();
    ValidationSupportChain chain =
        new ValidationSupportChain(
            new DefaultProfileValidationSupport(ctx),
            new CommonCodeSystemsTerminologyService(ctx),
            new InMemoryTerminologyServerValidationSupport(ctx),
            new SnapshotGeneratingValidationSupport(ctx));
    FhirInstanceValidator module = new FhirInstanceValidator(chain);
    // Extensions must resolve to a definition: an unknown one is an error, not a pass.
    module.setAnyExtensionsAllowed(false);
    FhirValidator validator = ctx.newValidator();
    validator.registerValidatorModule(module);

    int failed = 0;
    for (Path f : files) {
      String json = Files.readString(f, StandardCharsets.UTF_8);
      // Validate the raw text, not a parsed model: unknown or misspelt properties must be
      // reported, and a parser would drop them silently.
      ValidationResult r = validator.validateWithResult(json);
      boolean bad = false;
      for (SingleValidationMessage m : r.getMessages()) {
        ResultSeverityEnum sev = m.getSeverity();
        if (sev == ResultSeverityEnum.ERROR || sev == ResultSeverityEnum.FATAL) {
          bad = true;
        }
        System.out.println(
            f.getFileName() + ": " + sev.getCode() + " " + m.getLocationString() + " " + m.getMessage());
      }
      System.out.println(f.getFileName() + ": " + (bad ? "INVALID" : "valid"));
      if (bad) {
        failed++;
      }
    }
    System.out.println(
        (files.size() - failed) + " valid, " + failed + " invalid, of " + files.size() + " file(s)");
    System.exit(failed == 0 ? 0 : 1);
  }
}
