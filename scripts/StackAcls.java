// scripts/StackAcls.java - adds the secure stack's ACLs in one Admin request, run by
// scripts/stack-secure.sh with Java's source launcher (`java -cp KAFKA_LIBS/* StackAcls.java`).
// kafka-acls (AclCommand) takes one pattern type per run and a JVM start each; on the 2-core CI
// box that made the ~40 ACLs of the table a ten-minute step. Input on stdin, one ACL a line:
//   principal operation resource-type pattern-type name
// (resource-type topic|group|transactional-id, pattern-type literal|prefixed). Adding an
// existing ACL is a no-op, so this is idempotent. Args: bootstrap servers, client properties.
import java.io.BufferedReader;
import java.io.FileReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class StackAcls {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        try (FileReader r = new FileReader(args[1])) {
            props.load(r);
        }
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        List<AclBinding> acls = new ArrayList<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        for (String line; (line = in.readLine()) != null; ) {
            String[] f = line.trim().split("\\s+");
            if (f.length != 5) continue;
            ResourceType type = switch (f[2]) {
                case "topic" -> ResourceType.TOPIC;
                case "group" -> ResourceType.GROUP;
                case "transactional-id" -> ResourceType.TRANSACTIONAL_ID;
                default -> throw new IllegalArgumentException("resource type " + f[2]);
            };
            // Operation names as in kafka-acls: DescribeConfigs -> DESCRIBE_CONFIGS.
            AclOperation op = AclOperation.valueOf(
                f[1].replaceAll("([a-z])([A-Z])", "$1_$2").toUpperCase(Locale.ROOT));
            PatternType pattern = PatternType.valueOf(f[3].toUpperCase(Locale.ROOT));
            acls.add(new AclBinding(new ResourcePattern(type, f[4], pattern),
                new AccessControlEntry("User:" + f[0], "*", op, AclPermissionType.ALLOW)));
        }
        try (Admin admin = Admin.create(props)) {
            admin.createAcls(acls).all().get();
        }
        System.out.println(acls.size() + " ACLs in place");
    }
}
