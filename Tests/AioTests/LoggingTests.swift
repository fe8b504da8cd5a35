@_spi(AioInternals) @testable import Aio
import Logging
import Testing

@Suite("Logging through swift-log", .blockingLane)
struct LoggingTests {
    @Test("a context logs under the label aio, with its name as metadata, also after its logger is replaced")
    func contextLogger() throws {
        let ctx = try AioContext(name: "logged")
        #expect(ctx.logger.label == "aio")
        #expect(ctx.logger[metadataKey: "aio.context"] == "logged")

        let log = WarningLog()
        log.capture(ctx)
        #expect(ctx.logger[metadataKey: "aio.context"] == "logged", "a replaced logger keeps the context's metadata")
        ctx.warn("something the loop detected")
        #expect(log.all == ["something the loop detected"])
        #expect(log.metadata.first?["aio.context"] == "logged")
    }

    @Test("a logger given at init is the one the context uses, with the context's metadata added")
    func loggerAtInit() throws {
        let log = WarningLog()
        var base = Logger(label: "daemon") { _ in WarningLog.Handler(log: log) }
        base[metadataKey: "service"] = "storage"
        let ctx = try AioContext(name: "io0", logger: base)
        #expect(ctx.logger.label == "daemon")
        ctx.warn("w")
        #expect(log.metadata.first?["service"] == "storage")
        #expect(log.metadata.first?["aio.context"] == "io0")
    }
}

@Suite("Optional integrations", .blockingLane)
struct IntegrationTraitTests {
    @Test("the suite is built with the traits of the optional products (--enable-all-traits), so their tests run")
    func traitsEnabled() {
        #if !Metrics
        Issue.record("built without the package trait Metrics: AioMetrics and its tests are left out (use swift test --enable-all-traits, as scripts/test.sh does)")
        #endif
        #if !ServiceLifecycle
        Issue.record("built without the package trait ServiceLifecycle: AioServiceLifecycle and its tests are left out (use swift test --enable-all-traits, as scripts/test.sh does)")
        #endif
    }
}
