// An OPC UA server on node-opcua (an independent stack, not asyncua) for the interop tests.
// usage: node node_opcua_server.js <port> <pki folder>
// Objects/Plant/PMP-001/{flow,speed} in namespace urn:vigil:nodeopcua, NodeIds s=PMP-001.<sensor>, historized;
// every 50 ms each variable gets the value tick = floor(now / 50 ms) with that tick's time as source timestamp.
// Security: None and Basic256Sha256 Sign/SignAndEncrypt; client certificates are accepted (test PKI).
// Prints "READY <server certificate file>" once it listens.
const {
  OPCUAServer, OPCUACertificateManager, Variant, DataType, StatusCodes, SecurityPolicy, MessageSecurityMode,
} = require("node-opcua");

(async () => {
  const port = parseInt(process.argv[2], 10);
  const pki = process.argv[3];
  const serverCertificateManager = new OPCUACertificateManager({
    rootFolder: pki,
    automaticallyAcceptUnknownCertificate: true,
  });
  await serverCertificateManager.initialize();
  const server = new OPCUAServer({
    port,
    resourcePath: "/field",
    serverCertificateManager,
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: true,
    serverInfo: { applicationUri: "urn:vigil:nodeopcua:server" },
  });
  await server.initialize();
  const addressSpace = server.engine.addressSpace;
  const ns = addressSpace.registerNamespace("urn:vigil:nodeopcua");
  const plant = ns.addFolder(addressSpace.rootFolder.objects, { browseName: "Plant" });
  const pump = ns.addObject({ organizedBy: plant, browseName: "PMP-001" });
  const variables = ["flow", "speed"].map((sensor) =>
    ns.addVariable({
      componentOf: pump,
      browseName: sensor,
      nodeId: `s=PMP-001.${sensor}`,
      dataType: "Double",
      value: new Variant({ dataType: DataType.Double, value: 0 }),
    }),
  );
  for (const v of variables) {
    addressSpace.installHistoricalDataNode(v, { maxOnlineValues: 100000 });
  }
  await server.start();
  console.log(`READY ${server.certificateFile}`);
  const period = 50;
  let last = Math.floor(Date.now() / period);
  setInterval(() => {
    const now = Math.floor(Date.now() / period);
    for (let tick = last + 1; tick <= now; tick++) {
      for (const v of variables) {
        v.setValueFromSource(new Variant({ dataType: DataType.Double, value: tick }), StatusCodes.Good, new Date(tick * period));
      }
    }
    last = now;
  }, period);
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
