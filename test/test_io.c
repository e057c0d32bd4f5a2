// test_io.c - io/: PNG grids (written, then decoded with stb_image), JSON lines, output folders.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb/stb_image.h>

#include "../io/image.h"
#include "../io/output.h"
#include "test.h"

// A 2 x 3 grid of 1-channel 5 x 4 images at zoom 2 with 1-pixel frames decodes to the expected size and pixels.
static int io_png_grid(void) {
    char dir[] = "/tmp/amdim_io_XXXXXX", path[64], err[256] = "";
    if (!mkdtemp(dir)) return check_true(false, "mkdtemp");
    snprintf(path, sizeof path, "%s/grid.png", dir);
    Grid g = {.rows = 2, .cols = 3, .c = 1, .h = 5, .w = 4, .zoom = 2, .pad = 1};
    float images[6 * 5 * 4];
    for (int i = 0; i < 6 * 5 * 4; i++) images[i] = (float)(i % 20) / 19.0f;
    uint8_t frames[6][3];
    for (int i = 0; i < 6; i++) { frames[i][0] = 255; frames[i][1] = (uint8_t)(40 * i); frames[i][2] = 0; }
    int fails = check_true(png_write_grid(path, images, (const uint8_t (*)[3])frames, &g, err, sizeof err) == 0,
                           "grid written %s", err);
    int w = 0, h = 0, comp = 0;
    uint8_t *px = stbi_load(path, &w, &h, &comp, 3);
    int want_w = 3 * (4 * 2 + 2), want_h = 2 * (5 * 2 + 2);
    fails += check_true(px && w == want_w && h == want_h, "decodes as %dx%d (want %dx%d)", w, h, want_w, want_h);
    if (px) {
        // cell (1, 2): frame colour at its corner; its image's last pixel (value 1.0) at the bottom right inside
        const uint8_t *corner = px + ((long)(1 * 12) * w + 2 * 10) * 3;
        const uint8_t *last = px + ((long)(1 * 12 + 1 + 9) * w + 2 * 10 + 1 + 7) * 3;
        fails += check_true(corner[0] == 255 && corner[1] == 200 && last[0] == 255 && last[1] == 255,
                            "frame colour (%d, %d, %d) and image pixel %d where they belong", corner[0], corner[1],
                            corner[2], last[0]);
        stbi_image_free(px);
    }
    unlink(path);
    fails += check_true(png_write_grid("/proc/nope/grid.png", images, NULL, &g, err, sizeof err) != 0 &&
                        strstr(err, "/proc/nope/grid.png"), "an unwritable path is an error naming it: %s", err);
    rmdir(dir);
    return fails;
}

// Strings in JSON lines are escaped; NaN becomes null; missing parent folders are made.
static int io_json_lines(void) {
    char dir[] = "/tmp/amdim_io_XXXXXX", path[128], err[256] = "", line[256] = "";
    if (!mkdtemp(dir)) return check_true(false, "mkdtemp");
    snprintf(path, sizeof path, "%s/a/b/log.jsonl", dir);
    FILE *f = open_output(path, "w", err, sizeof err);
    int fails = check_true(f != NULL, "open_output made the missing folders %s", err);
    if (!f) return fails;
    JsonLine j;
    jsonl_begin(&j, f);
    jsonl_str(&j, "path", "q\"uo\\te\nline\x01");
    jsonl_num(&j, "nan", 0.0 / 0.0);
    jsonl_int(&j, "step", 7);
    fails += check_true(jsonl_end(&j) == 0, "line written");
    fclose(f);
    f = fopen(path, "r");
    if (f && fgets(line, sizeof line, f)) {
        const char *want = "{\"path\":\"q\\\"uo\\\\te\\nline\\u0001\",\"nan\":null,\"step\":7}\n";
        fails += check_true(!strcmp(line, want), "escaped line %s", line);
    } else {
        fails += check_true(false, "line read back");
    }
    if (f) fclose(f);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    fails += check_true(system(cmd) == 0, "cleaned up");
    return fails;
}

void register_io_tests(void) {
    test_register("io", "PNG grid written and decoded (stb_image)", io_png_grid);
    test_register("io", "JSON lines escaped, NaN as null, folders made", io_json_lines);
}
