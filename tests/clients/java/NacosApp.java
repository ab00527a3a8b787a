// A real application's use of the official Nacos Java SDK, for the end-to-end tests. The same source
// is compiled against nacos-client 2.5.1 (gRPC: the connection owns ephemeral instances) and 1.4.x
// (HTTP registration and a beat every 5 s), both from Maven Central; tests/testbed.sh builds both.
//
//   register --server H:P --service S --instances IP:PORT[,IP:PORT...] [--group G] [--cluster C]
//            [--namespace NS] [--persistent] [--metadata-chars N] [--username U --password P]
//       One NamingService (its own connection, as one pod's process) per instance. Prints READY once
//       all are registered, then obeys stdin lines: `close I` (shut that NamingService down: its
//       connection closes), `exit`. End of stdin changes nothing: the process runs until killed.
//   consume  --server H:P --service S [--group G] [--namespace NS] [--push-empty-protection]
//            [--username U --password P]
//       Subscribes; prints `PUSH <ip:port,...>` (healthy, enabled instances, sorted) on every push,
//       and on stdin `select` prints `SELECT <ip:port,...>` from selectInstances(healthy=true).
import com.alibaba.nacos.api.naming.NamingFactory;
import com.alibaba.nacos.api.naming.NamingService;
import com.alibaba.nacos.api.naming.listener.NamingEvent;
import com.alibaba.nacos.api.naming.pojo.Instance;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;

public class NacosApp {
    private static final Map<String, String> opts = new HashMap<>();

    public static void main(String[] args) throws Exception {
        if (args.length == 0) {
            fail("usage: NacosApp register|consume --server H:P --service S ...");
        }
        for (int i = 1; i < args.length; i++) {
            String a = args[i];
            if (!a.startsWith("--")) fail("unexpected argument " + a);
            String key = a.substring(2);
            if (key.equals("persistent") || key.equals("push-empty-protection")) {
                opts.put(key, "true");
            } else if (i + 1 < args.length) {
                opts.put(key, args[++i]);
            } else {
                fail("--" + key + " needs a value");
            }
        }
        switch (args[0]) {
            case "register": register(); break;
            case "consume": consume(); break;
            default: fail("unknown mode " + args[0]);
        }
    }

    private static void fail(String why) {
        System.err.println("NacosApp: " + why);
        System.exit(2);
    }

    private static String need(String key) {
        String v = opts.get(key);
        if (v == null) fail("--" + key + " is required");
        return v;
    }

    private static NamingService naming() throws Exception {
        Properties p = new Properties();
        p.put("serverAddr", need("server"));
        // An empty namespace would register into namespace "" over gRPC, which HTTP calls do not see.
        p.put("namespace", opts.getOrDefault("namespace", "public"));
        if (opts.containsKey("username")) {
            p.put("username", opts.get("username"));
            p.put("password", need("password"));
        }
        if (opts.containsKey("push-empty-protection")) {
            p.put("namingPushEmptyProtection", "true");
        }
        return NamingFactory.createNamingService(p);
    }

    private static void register() throws Exception {
        String service = need("service");
        String group = opts.getOrDefault("group", "DEFAULT_GROUP");
        List<NamingService> owners = new ArrayList<>();
        for (String item : need("instances").split(",")) {
            int colon = item.lastIndexOf(':');
            Instance inst = new Instance();
            inst.setIp(item.substring(0, colon));
            inst.setPort(Integer.parseInt(item.substring(colon + 1)));
            inst.setClusterName(opts.getOrDefault("cluster", "DEFAULT"));
            inst.setEphemeral(!opts.containsKey("persistent"));
            inst.setWeight(1.0);
            Map<String, String> meta = new HashMap<>();
            meta.put("registered-by", "NacosApp");
            // --metadata-chars N: metadata of N characters in all (keys and values, as Nacos counts
            // them against its 1,024 limit), as a Dubbo provider's long URL parameters make it.
            int chars = Integer.parseInt(opts.getOrDefault("metadata-chars", "0"));
            int rest = chars - "registered-by".length() - "NacosApp".length() - "dubbo.metadata".length();
            if (rest > 0) {
                StringBuilder sb = new StringBuilder();
                while (sb.length() < rest) sb.append("dubbo.method.parameters.x");
                meta.put("dubbo.metadata", sb.substring(0, rest));
            }
            inst.setMetadata(meta);
            NamingService ns = naming();
            ns.registerInstance(service, group, inst);
            owners.add(ns);
        }
        // Registration is asynchronous on the server: wait until each instance is listed.
        for (NamingService ns : owners) {
            waitListed(ns, service, group);
        }
        System.out.println("READY");
        System.out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            String[] w = line.trim().split("\\s+");
            if (w[0].equals("exit")) System.exit(0);
            if (w[0].equals("close") && w.length == 2) {
                owners.get(Integer.parseInt(w[1])).shutDown();
                System.out.println("CLOSED " + w[1]);
                System.out.flush();
            }
        }
        Thread.sleep(Long.MAX_VALUE);
    }

    private static void waitListed(NamingService ns, String service, String group) throws Exception {
        for (int i = 0; i < 100; i++) {
            if (!ns.getAllInstances(service, group, false).isEmpty()) return;
            Thread.sleep(100);
        }
        fail("registered instances of " + service + " are not listed after 10 s");
    }

    private static String usable(List<Instance> instances) {
        TreeSet<String> out = new TreeSet<>();
        for (Instance i : instances) {
            if (i.isEnabled() && i.isHealthy()) out.add(i.getIp() + ":" + i.getPort());
        }
        return String.join(",", out);
    }

    private static void consume() throws Exception {
        String service = need("service");
        String group = opts.getOrDefault("group", "DEFAULT_GROUP");
        NamingService ns = naming();
        ns.subscribe(service, group, event -> {
            if (event instanceof NamingEvent) {
                synchronized (System.out) {
                    System.out.println("PUSH " + usable(((NamingEvent) event).getInstances()));
                    System.out.flush();
                }
            }
        });
        System.out.println("READY");
        System.out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.trim().equals("select")) {
                String list = usable(ns.selectInstances(service, group, true));
                synchronized (System.out) {
                    System.out.println("SELECT " + list);
                    System.out.flush();
                }
            }
        }
        Thread.sleep(Long.MAX_VALUE);
    }
}
