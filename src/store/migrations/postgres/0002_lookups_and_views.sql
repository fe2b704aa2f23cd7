-- Lookup tables from Huawei's VoiceCall documentation (shared/reference/huawei-voicecall.md).
-- The release-point and Q.850 tables are only partly published; codes not listed have no row.

CREATE TABLE huawei_state_codes (
    code    integer PRIMARY KEY, -- call_events.state_code (挂机原因值)
    meaning text    NOT NULL
);
INSERT INTO huawei_state_codes (code, meaning) VALUES
    (0, '接通后主动挂机'),
    (7001, '开发者呼叫频次管控'),
    (7002, '应用呼叫频次管控'),
    (7003, '固话号码呼叫频次管控'),
    (7004, '被叫黑名单呼叫管控'),
    (7108, '用户状态已冻结'),
    (7109, '语音端口不足'),
    (8000, '内部错误'),
    (8001, '用户未接续成功'),
    (8002, '接续用户时对端返回失败放音'),
    (8003, '用户振铃超时'),
    (8004, '用户振铃时挂机'),
    (8005, 'TTS转换失败'),
    (8006, '放音文件不存在'),
    (8007, '给用户放音失败'),
    (8008, '放音收号失败 (keys must be pressed within 5 s after the prompt ends)'),
    (8009, '接通前主叫用户主动挂机'),
    (8010, '超过通话最大时长挂机'),
    (8012, '无效的app_key'),
    (8015, '给用户录音失败'),
    (8017, '用户指示挂机'),
    (8018, '业务无权限'),
    (8020, '业务异常'),
    (8100, '被叫号码不存在'),
    (8101, '被叫无应答'),
    (8102, '被叫用户正忙'),
    (8103, '被叫用户暂时无法接通'),
    (8104, '被叫已关机'),
    (8105, '被叫挂机或被叫已停机');

-- Ranges: several codes share a meaning; 400-699 is a SIP status used as the release point when
-- the far end gave no Q.850 cause. Take the narrowest range that matches.
CREATE TABLE huawei_release_points (
    code_from integer NOT NULL, -- cdrs.ul_fail_reason (呼叫拆线点)
    code_to   integer NOT NULL,
    meaning   text    NOT NULL,
    PRIMARY KEY (code_from, code_to)
);
INSERT INTO huawei_release_points (code_from, code_to, meaning) VALUES
    (0, 0, '接通后主动挂机'),
    (100, 100, '放音收号时收到空号码'),
    (501, 510, '录音会议/端点/启动/提示音 失败或超时'),
    (512, 512, '录音VCU倒换释放呼叫'),
    (513, 513, '呼叫超时'),
    (514, 514, '振铃超时'),
    (515, 515, '远端用户主动Cancel'),
    (516, 516, '本端用户主动Cancel'),
    (517, 517, '平台响应超时'),
    (518, 518, '远端用户呼叫失败 (see the Q850 cause)'),
    (519, 519, '本端呼叫失败 OXX'),
    (520, 520, '本端呼叫失败 18X'),
    (521, 521, '远端未振铃已拆线'),
    (522, 522, '语音端口不足'),
    (524, 524, '放音文件不存在'),
    (526, 526, '静音失败'),
    (527, 527, '取消静音失败'),
    (528, 528, '限制呼叫非特定前缀的号码'),
    (529, 529, 'appkey不存在'),
    (530, 530, 'forward前主叫挂机'),
    (539, 539, '录音流程未完成, 主叫挂机'),
    (540, 540, '录音流程未完成, 被叫挂机'),
    (541, 541, '重协商失败'),
    (542, 542, '录音超时释放呼叫'),
    (550, 550, '本端呼叫振铃失败'),
    (551, 551, '点击呼叫本端收到OXX'),
    (552, 552, '远端振铃时本端挂机'),
    (553, 553, '远端未振铃时本端挂机'),
    (400, 699, 'SIP response code used directly when the far end gave no Q.850 cause (e.g. 404)'),
    (1001, 1001, '坐席主动挂机'),
    (1002, 1002, '用户主动挂机'),
    (1003, 1003, 'SP调用总机释放接口挂机'),
    (1004, 1004, '点击外呼后坐席盲转并挂机'),
    (2801, 2801, 'IVR放音失败'),
    (2802, 2802, 'IVR规则无效'),
    (2803, 2803, 'IVR按键超过最大次数'),
    (2805, 2805, 'IVR不在服务时间'),
    (2806, 2806, 'IVR不在服务时间'),
    (2810, 2810, '未配置MRF'),
    (2811, 2811, '未配置ICSCF'),
    (2812, 2812, '放音超时'),
    (2825, 2825, '满意度调查结束'),
    (2829, 2829, '拨分机号被叫忙/无应答'),
    (2831, 2831, '企业呼入License受限'),
    (2837, 2837, '放音失败'),
    (2838, 2838, 'INVITE超时释放'),
    (2847, 2847, '总机选线无可用坐席'),
    (2853, 2853, '坐席不可用,拒接呼入'),
    (2863, 2863, '留言创建录音失败'),
    (2868, 2868, '企业已停机'),
    (2871, 2871, '动态ivr等待sp指令超时'),
    (2901, 2914, '录音失败'),
    (7001, 7005, '频次/黑名单管控'),
    (7100, 7100, 'app信息不存在'),
    (7105, 7105, '业务类型不匹配'),
    (7106, 7106, 'APP未申请个人小号能力'),
    (7107, 7107, '安全管控提示音放音失败'),
    (7108, 7108, '用户状态已冻结'),
    (7109, 7109, '语音端口不足'),
    (8000, 8000, '内部错误'),
    (8001, 8001, '用户未接续成功');

CREATE TABLE q850_causes (
    code    integer PRIMARY KEY, -- cdrs.fwd_unasw_rsn, cdrs.call_out_unasw_rsn
    meaning text    NOT NULL
);
INSERT INTO q850_causes (code, meaning) VALUES
    (0, '不涉及'),
    (1, '无法找到号码'),
    (2, '无法路由到网络'),
    (3, '无法路由到目的地'),
    (4, '发送特殊消息'),
    (5, '中继前缀出错'),
    (6, '通道无法接入'),
    (7, '已经建立频道'),
    (8, '抢先占有'),
    (9, '抢先占有保留'),
    (16, '正常呼叫清除'),
    (17, '用户忙'),
    (18, '无应答'),
    (19, '无用户应答'),
    (86, '隐藏号码呼叫'),
    (87, 'CUG无成员'),
    (88, '目标冲突'),
    (90, 'CUG不存在'),
    (91, '无效网络'),
    (95, '无效信息'),
    (96, '非托管元素'),
    (97, '类型不存在'),
    (98, '信息没执行'),
    (99, '信息单元不存在'),
    (100, '无效的信息单元'),
    (101, '呼叫状态不一致'),
    (102, '定时器超时'),
    (103, '参数不存在'),
    (110, '消息中带有未识别的参数'),
    (111, '协议错误'),
    (127, '未指定的交互');

-- CDRs with their codes explained, for reports.
CREATE VIEW cdrs_explained AS
SELECT c.*,
       (SELECT r.meaning FROM huawei_release_points r
         WHERE c.ul_fail_reason BETWEEN r.code_from AND r.code_to
         ORDER BY r.code_to - r.code_from LIMIT 1)              AS ul_fail_reason_meaning,
       (SELECT q.meaning FROM q850_causes q WHERE q.code = c.fwd_unasw_rsn)      AS fwd_unasw_rsn_meaning,
       (SELECT q.meaning FROM q850_causes q WHERE q.code = c.call_out_unasw_rsn) AS call_out_unasw_rsn_meaning
  FROM cdrs c;

-- Hang-up events with their reason explained.
CREATE VIEW call_events_explained AS
SELECT e.*, s.meaning AS state_meaning
  FROM call_events e LEFT JOIN huawei_state_codes s ON s.code = e.state_code;

-- One row per UTC day, source and service type: the figures billing and dashboards ask for.
CREATE VIEW cdr_daily AS
SELECT date_trunc('day', ended_at)::date AS day,
       source,
       service_type,
       count(*)                                  AS calls,
       count(*) FILTER (WHERE answered)          AS answered,
       coalesce(sum(talk_seconds), 0)            AS talk_seconds,
       coalesce(sum(billable_minutes), 0)        AS billable_minutes,
       count(*) FILTER (WHERE cardinality(flags) > 0) AS flagged
  FROM cdrs
 GROUP BY 1, 2, 3;
