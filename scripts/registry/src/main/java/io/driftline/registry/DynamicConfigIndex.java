package io.driftline.registry;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import java.util.List;
import javax.enterprise.inject.Produces;
import javax.inject.Singleton;

/**
 * The bean the Quarkus extension apicurio-common-app-components-config-index would build (its
 * deployment jar is not on Maven Central): the registry's runtime-editable settings, none here.
 */
public class DynamicConfigIndex {
    @Produces
    @Singleton
    DynamicConfigPropertyList dynamicConfigPropertyList() {
        return new DynamicConfigPropertyList(List.of());
    }
}
